"""TLS for a client with its own network thread, through memory BIOs.

Mosquitto writes every packet as a TLS record of its own, and an
``ssl.SSLSocket`` hands out one record per ``recv_into``, each a call into
OpenSSL that reads the record's header and body from the socket: at one small
reading per QoS 1 message that cost a consumer several µs of CPU per message
(`bench/tls_read.py`). A :class:`TlsPipe` reads whatever the kernel holds in one
``recv`` and decrypts every complete record in it into the caller's buffer
(2.1-2.3 µs per message against 6.3-9.7 in the same run, 250-byte records).

One lock guards the TLS state: the network thread decrypts under it, and any
thread may :meth:`TlsPipe.sendall` (ingest's writer thread sends PUBACKs) while
the network thread waits in ``recv`` outside it.
"""

from __future__ import annotations

import socket
import ssl
import threading
from typing import Final

RECV_BYTES: Final = 256 * 1024  # one recv takes what the kernel holds, up to this


class TlsPipe:
    """A connected TLS client over ``sock``; the subset of ``socket`` the MQTT session uses."""

    def __init__(self, sock: socket.socket, context: ssl.SSLContext, server_hostname: str) -> None:
        self._sock = sock
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._tls = context.wrap_bio(
            self._incoming, self._outgoing, server_hostname=server_hostname
        )
        self._lock = threading.Lock()
        self._closed_by_peer = False

    def handshake(self) -> None:
        """Complete the handshake (the socket's timeout applies to each read); a
        certificate the context does not trust raises ``ssl.SSLCertVerificationError``."""
        while True:
            try:
                self._tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                self._flush()
                data = self._sock.recv(RECV_BYTES)
            if not data:
                raise ssl.SSLEOFError("the broker closed the connection during the handshake")
            self._incoming.write(data)
        self._flush()

    def recv_into(self, buffer: memoryview | bytearray) -> int:
        """Plaintext into ``buffer``: every record already received, else one ``recv``'s
        worth; 0 when the peer closed. ``TimeoutError`` as the socket's timeout says."""
        view = memoryview(buffer)
        while True:
            with self._lock:
                got = self._decrypt_into(view)
                self._flush()  # what reading produced (a TLS 1.3 key update's answer)
            if got or self._closed_by_peer:
                return got
            data = self._sock.recv(RECV_BYTES)
            if not data:
                return 0
            with self._lock:
                self._incoming.write(data)

    def sendall(self, data: bytes) -> None:
        with self._lock:
            self._tls.write(data)
            self._flush()

    def settimeout(self, timeout: float | None) -> None:
        self._sock.settimeout(timeout)

    def shutdown(self, how: int) -> None:
        self._sock.shutdown(how)

    def close(self) -> None:
        self._sock.close()

    def _decrypt_into(self, view: memoryview) -> int:
        got, size = 0, len(view)
        while got < size:
            try:
                n: int = self._tls.read(size - got, view[got:])  # type: ignore[assignment]
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:  # the broker's close_notify
                self._closed_by_peer = True
                break
            if not n:
                break
            got += n
        return got

    def _flush(self) -> None:
        data = self._outgoing.read()
        if data:
            self._sock.sendall(data)
