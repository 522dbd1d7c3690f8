"""Reading many small TLS records: ``.venv/bin/python -m bench.tls_read [--messages N]``.

Mosquitto writes each packet as a TLS record of its own. A server process on
127.0.0.1 does the same (one ``sendall`` of ``--size`` bytes per message over
TLS, certificate made by openssl for the run), and this process reads them
twice: through an ``ssl.SSLSocket`` (one record per ``recv_into``, then
``pending()`` / ``select`` as ingest's network thread did) and through
:class:`mqttlink.tls_pipe.TlsPipe`. Reports the reading thread's CPU time per
message (``time.thread_time``), which is what the change is about.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import platform
import select
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from mqttlink.tls_pipe import TlsPipe


def make_certificate(directory: Path) -> tuple[Path, Path]:
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


def serve(cert: Path, key: str, ports: mp.Queue, rounds: int, messages: int, size: int) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    listener = socket.create_server(("127.0.0.1", 0))
    ports.put(listener.getsockname()[1])
    payload = b"x" * size
    for _ in range(rounds):
        conn, _ = listener.accept()
        with context.wrap_socket(conn, server_side=True) as tls:
            for _ in range(messages):
                tls.sendall(payload)  # one record per message
            tls.recv(1)  # until the reader has everything and closes


def through_sslsocket(port: int, context: ssl.SSLContext, total: int) -> float:
    sock = context.wrap_socket(
        socket.create_connection(("127.0.0.1", port)), server_hostname="localhost"
    )
    view = memoryview(bytearray(256 * 1024))
    got, cpu = 0, time.thread_time()
    while got < total:
        got += sock.recv_into(view)
        while got < total and (sock.pending() or select.select([sock], [], [], 0)[0]):
            got += sock.recv_into(view)
    cpu = time.thread_time() - cpu
    sock.close()
    return cpu


def through_pipe(port: int, context: ssl.SSLContext, total: int) -> float:
    pipe = TlsPipe(socket.create_connection(("127.0.0.1", port)), context, "localhost")
    pipe.handshake()
    view = memoryview(bytearray(256 * 1024))
    got, cpu = 0, time.thread_time()
    while got < total:
        got += pipe.recv_into(view)
    cpu = time.thread_time() - cpu
    pipe.close()
    return cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--size", type=int, default=250, help="bytes per message (record)")
    parser.add_argument("--repeat", type=int, default=3, help="alternating runs of each")
    args = parser.parse_args()
    readers: list[tuple[str, Callable[[int, ssl.SSLContext, int], float]]] = [
        ("ssl.SSLSocket, recv_into per record", through_sslsocket),
        ("TlsPipe (memory BIOs)", through_pipe),
    ]
    with tempfile.TemporaryDirectory() as tmp:
        cert, key = make_certificate(Path(tmp))
        context = ssl.create_default_context(cafile=str(cert))
        ports: mp.Queue = mp.Queue()
        rounds = args.repeat * len(readers)
        server = mp.Process(
            target=serve, args=(cert, str(key), ports, rounds, args.messages, args.size)
        )
        server.start()
        port = ports.get(timeout=30)
        results: dict[str, list[float]] = {name: [] for name, _ in readers}
        for run in range(args.repeat):
            for name, reader in readers:
                cpu = reader(port, context, args.messages * args.size)
                results[name].append(cpu / args.messages * 1e6)
                print(f"  run {run + 1}: {name}: {results[name][-1]:.2f} µs", flush=True)
        server.join(30)
    print(
        f"\n{args.messages:,} records of {args.size} B; {platform.machine()}, "
        f"{mp.cpu_count()} cores; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
    )
    print("| reader | CPU µs per message (each run) |\n|---|---|")
    for name, values in results.items():
        print(f"| {name} | {' / '.join(f'{v:.2f}' for v in values)} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
