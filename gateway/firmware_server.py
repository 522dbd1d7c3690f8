"""The gateway's local firmware server: ``GET /firmware/{sha256}`` with HTTP Range.

Devices of the centre reach it on the local network at ``firmware_url``. Files
are addressed by their SHA-256 (firmware is not secret; the device checks the
digest), so the server asks for no login. Threads: one per request
(``ThreadingHTTPServer``), started by :meth:`FirmwareServer.start`.
"""

from __future__ import annotations

import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from contract.firmware import CHUNK_BYTES, LOCAL_PATH, ByteRange, RangeError, parse_range
from gateway.firmware_cache import CacheError, FirmwareCache
from runtime.logs import kv

log = logging.getLogger(__name__)
PREFIX = LOCAL_PATH.split("{", 1)[0]


class FirmwareServer:
    def __init__(self, cache: FirmwareCache, host: str, port: int) -> None:
        self.cache = cache
        self.served = 0
        self._httpd = ThreadingHTTPServer((host, port), self._handler())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name="firmware-server", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                if not self.path.startswith(PREFIX):
                    self.send_error(404)
                    return
                try:
                    path = server.cache.get(self.path[len(PREFIX) :])
                except CacheError as exc:
                    self.send_error(exc.status, str(exc))
                    return
                total = path.stat().st_size
                try:
                    part = parse_range(self.headers.get("Range"), total)
                except RangeError:
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{total}")
                    self.end_headers()
                    return
                status = 206 if part is not None else 200
                part = part or ByteRange(0, max(0, total - 1))
                length = part.length if total else 0
                self.send_response(status)
                self.send_header("Accept-Ranges", "bytes")
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(length))
                if status == 206:
                    self.send_header("Content-Range", part.content_range(total))
                self.end_headers()
                server.served += 1
                try:
                    with path.open("rb") as data:
                        data.seek(part.start)
                        left = length
                        while left > 0:
                            chunk = data.read(min(CHUNK_BYTES, left))
                            if not chunk:
                                break
                            self.wfile.write(chunk)
                            left -= len(chunk)
                except OSError as exc:  # the device went away
                    log.info(kv("firmware_send_cut", error=exc))

        return Handler
