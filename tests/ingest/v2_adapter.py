"""Test-only: the InfluxDB 2 write API in front of a real InfluxDB 1.x.

Answers ``POST /api/v2/write`` by forwarding the body to ``/write`` the way
InfluxDB 1.8's compatibility API maps it: bucket ``db/rp`` (or ``db``),
``Authorization: Token user:password``; the 1.x answer (status and body) is
passed back unchanged. Also answers ``/ping`` and ``/health``. Runs on a free
loopback port in a thread.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import httpx

from gramlink.services.process import free_port


class V2Adapter:
    def __init__(self, influx_v1_url: str) -> None:
        self.target = influx_v1_url
        self.port = free_port()
        self.requests = 0
        adapter = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _answer(
                self, status: int, body: bytes = b"", ctype: str = "application/json"
            ) -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                path = urlsplit(self.path).path
                if path == "/ping":
                    self._answer(204)
                elif path == "/health":
                    self._answer(200, json.dumps({"status": "pass", "name": "influxdb"}).encode())
                else:
                    self._answer(404, b'{"code":"not found"}')

            def do_POST(self) -> None:
                url = urlsplit(self.path)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if url.path != "/api/v2/write":
                    self._answer(404, b'{"code":"not found"}')
                    return
                adapter.requests += 1
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                db, _, rp = query.get("bucket", "").partition("/")
                token = self.headers.get("Authorization", "").removeprefix("Token ")
                user, _, password = token.partition(":")
                params = {"db": db, "precision": query.get("precision", "ns")}
                if rp:
                    params["rp"] = rp
                if user:
                    params.update(u=user, p=password)
                headers = {"Content-Type": "text/plain"}
                if self.headers.get("Content-Encoding"):
                    headers["Content-Encoding"] = self.headers["Content-Encoding"]
                try:
                    got = httpx.post(
                        f"{adapter.target}/write",
                        params=params,
                        content=body,
                        headers=headers,
                        timeout=30,
                    )
                except httpx.HTTPError as exc:
                    self._answer(
                        503, json.dumps({"code": "unavailable", "message": str(exc)}).encode()
                    )
                    return
                self._answer(got.status_code, got.content)

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> V2Adapter:
        self.thread.start()
        httpx.get(f"{self.url}/ping", timeout=5).raise_for_status()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)
