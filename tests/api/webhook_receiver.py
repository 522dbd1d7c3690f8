"""A real HTTP receiver for webhook tests: ``http.server`` on 127.0.0.1 in a thread.

Each request is recorded (delivery id, headers, exact body bytes, whether its
signature verified) and answered by ``answer(request, tries_of_this_delivery)``,
which may block (to hold a request open) and returns a status code.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from api.alerts import signing


@dataclass(frozen=True)
class Received:
    delivery: str
    headers: dict[str, str]
    body: bytes
    verified: bool
    at: float = field(default_factory=time.monotonic)


Answer = Callable[[Received, int], int]


class Receiver:
    def __init__(self, secret: str, answer: Answer | None = None) -> None:
        self.secret = secret
        self.answer: Answer = answer or (lambda _request, _tries: 200)
        self.received: list[Received] = []
        self.tries: Counter[str] = Counter()
        self.in_progress: Counter[str] = Counter()
        self.max_concurrent_per_delivery = 0
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/hook"

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def deliveries(self) -> list[str]:
        with self._lock:
            return [r.delivery for r in self.received]

    def count(self) -> int:
        with self._lock:
            return len(self.received)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                headers = {k.lower(): v for k, v in self.headers.items()}
                verified = signing.verify(
                    receiver.secret,
                    headers.get(signing.TIMESTAMP_HEADER.lower(), ""),
                    headers.get(signing.SIGNATURE_HEADER.lower(), ""),
                    body,
                    now=time.time(),
                )
                request = Received(
                    headers.get(signing.DELIVERY_HEADER.lower(), ""), headers, body, verified
                )
                with receiver._lock:
                    receiver.received.append(request)
                    receiver.tries[request.delivery] += 1
                    tries = receiver.tries[request.delivery]
                    receiver.in_progress[request.delivery] += 1
                    receiver.max_concurrent_per_delivery = max(
                        receiver.max_concurrent_per_delivery,
                        receiver.in_progress[request.delivery],
                    )
                try:
                    status = receiver.answer(request, tries)
                finally:
                    with receiver._lock:
                        receiver.in_progress[request.delivery] -= 1
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: object) -> None:
                pass

        return Handler
