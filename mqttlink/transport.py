"""Sockets for the raw MQTT clients: TCP, or TLS (``mqtts://``) with the configured CA.

:func:`open_blocking` connects (and verifies the broker's certificate) for a
client with its own network thread (TLS through :class:`mqttlink.tls_pipe.TlsPipe`);
:func:`wrap_nonblocking` turns an already connected non-blocking socket into a
TLS one whose handshake the caller's event loop drives (:func:`handshake`). A
certificate the configured CA did not sign is permanent:
:func:`certificate_refusal` names the CA file setting.
"""

from __future__ import annotations

import socket
import ssl

from mqttlink.endpoint import Endpoint
from mqttlink.reasons import Fix, Reason, Refusal, SettingNames
from mqttlink.tls_pipe import TlsPipe

WANT_IO = (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError)
Connection = socket.socket | TlsPipe


def open_blocking(endpoint: Endpoint, context: ssl.SSLContext | None, timeout: float) -> Connection:
    """A connected socket (TLS done when ``endpoint.tls``); OSError / ssl errors as raised."""
    sock = socket.create_connection((endpoint.host, endpoint.port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if not endpoint.tls:
        return sock
    try:
        pipe = TlsPipe(sock, context or ssl.create_default_context(), endpoint.host)
        pipe.handshake()
    except BaseException:
        sock.close()
        raise
    return pipe


def wrap_nonblocking(
    sock: socket.socket, endpoint: Endpoint, context: ssl.SSLContext | None
) -> ssl.SSLSocket:
    """TLS over a connected non-blocking socket; call :func:`handshake` until it returns True."""
    return (context or ssl.create_default_context()).wrap_socket(
        sock, server_hostname=endpoint.host, do_handshake_on_connect=False
    )


def handshake(sock: ssl.SSLSocket) -> bool | str:
    """One step of a non-blocking handshake: True done, ``"read"``/``"write"`` what to wait for."""
    try:
        sock.do_handshake()
    except ssl.SSLWantReadError:
        return "read"
    except ssl.SSLWantWriteError:
        return "write"
    return True


def certificate_refusal(what: str, url: str, names: SettingNames, exc: BaseException) -> Refusal:
    """The one line for a broker certificate our CA file does not trust (exit 2: a setting)."""
    setting = names.ca_file or "the CA file setting"
    detail = getattr(exc, "verify_message", None) or str(exc)
    found = Reason(0, "broker certificate not trusted", True, Fix.CA_FILE)
    line = f"{what}: {url}: the broker's TLS certificate is not trusted ({detail}); check {setting}"
    return Refusal(found, line)
