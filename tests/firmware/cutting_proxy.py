"""A TCP proxy that cuts the first firmware download in the middle (a bad link), or
slows every answer down (a thin link).

Every request line and its ``Range`` header is recorded; the first connection
whose request asks for a firmware file is closed after ``cut_after`` bytes of the
answer, every later one passes whole.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time


class CuttingProxy:
    def __init__(self, upstream_port: int, cut_after: int | None, delay_s: float = 0.0) -> None:
        self.upstream_port = upstream_port
        self.cut_after = cut_after  # None: never cut
        self.delay_s = delay_s  # a slow link: this long per 16 KiB of an answer
        self.requests: list[tuple[str, str | None]] = []  # (request line, Range header)
        self.cuts = 0
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="cutting-proxy", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._listener.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = client.recv(65536)
            if not chunk:
                client.close()
                upstream.close()
                return
            head += chunk
        lines = head.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
        ranges = [v.split(":", 1)[1].strip() for v in lines[1:] if v.lower().startswith("range:")]
        with self._lock:
            self.requests.append((lines[0], ranges[0] if ranges else None))
            cut = self.cut_after is not None and self.cuts == 0 and "/file" in lines[0]
            if cut:
                self.cuts += 1
        upstream.sendall(head)
        threading.Thread(target=self._pipe, args=(client, upstream, None), daemon=True).start()
        self._pipe(upstream, client, self.cut_after if cut else None, self.delay_s)

    @staticmethod
    def _pipe(
        source: socket.socket, sink: socket.socket, limit: int | None, delay_s: float = 0.0
    ) -> None:
        sent = 0
        try:
            while True:
                chunk = source.recv(16384)
                if not chunk:
                    break
                if limit is not None and sent + len(chunk) >= limit:
                    sink.sendall(chunk[: limit - sent])
                    break
                sink.sendall(chunk)
                sent += len(chunk)
                if delay_s:
                    time.sleep(delay_s)  # the simulated link's speed, not a wait
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
