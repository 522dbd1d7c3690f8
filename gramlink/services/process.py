"""A background process owned through a PID file.

Errors: :class:`ServiceError` (permanent for this call: a port in use, a binary
missing, a process that never became ready). Its message is one line meant for
the operator.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path


class ServiceError(RuntimeError):
    """A service could not be started, reached or stopped."""


EPHEMERAL_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
LOWEST_PICKED = 20_000
_ports = random.Random()  # its own state: a test framework may seed the module's


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody is bound to right now, below the kernel's ephemeral range
    when it leaves room (else the kernel's choice).

    The process that is given it binds it later. A port from the ephemeral range may be
    taken in between as the local end of any outgoing connection (a fresh-clone test
    run lost one of its servers that way); ports below it are only ever bound on
    purpose.
    """
    low = _ephemeral_low()
    room = low > LOWEST_PICKED + 1000
    for _ in range(50 if room else 1):
        port = _ports.randrange(LOWEST_PICKED, low) if room else 0
        with socket.socket() as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
            return int(sock.getsockname()[1])
    raise ServiceError(f"no free TCP port on {host} between {LOWEST_PICKED} and {low}")


def _ephemeral_low() -> int:
    """The lowest port the kernel gives outgoing connections (32768 when unknown)."""
    try:
        return int(EPHEMERAL_RANGE_FILE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768


def bound_socket(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    """A TCP socket bound now (port 0: the kernel's choice), for a server run in this
    process (``uvicorn.Server.run(sockets=[...])``): a port from :func:`free_port` is
    free only until someone else binds it, and another process's connection may."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def port_in_use(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``check`` until it holds; raise ServiceError naming ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    delay = 0.02
    while not check():
        if time.monotonic() > deadline:
            raise ServiceError(f"{what} not ready after {timeout:.0f} s")
        time.sleep(delay)
        delay = min(delay * 1.5, 0.25)


class PidProcess:
    """Start, find and stop one process recorded in ``pid_file``.

    A PID is trusted only while ``/proc/PID/cmdline`` still names ``marker`` (the
    process's own config file), so a stale PID file never ends someone else's
    process.
    """

    def __init__(self, name: str, pid_file: Path, marker: str, log_file: Path) -> None:
        self.name = name
        self.pid_file = pid_file
        self.marker = marker
        self.log_file = log_file
        self._child: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return None
        if self.marker.encode() not in cmdline or self._is_zombie(pid):
            return None
        return pid

    @staticmethod
    def _is_zombie(pid: int) -> bool:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return True
        return stat.rsplit(")", 1)[1].split()[0] == "Z"

    def running(self) -> bool:
        return self.pid is not None

    def spawn(self, argv: Sequence[str]) -> int:
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as log:
            try:
                child = subprocess.Popen(
                    list(argv),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            except FileNotFoundError as exc:
                raise ServiceError(f"{self.name}: {argv[0]} not found (apt-get install)") from exc
        self._child = child
        self.pid_file.write_text(f"{child.pid}\n")
        return child.pid

    def exit_code(self) -> int | None:
        """The exit status of the process we spawned once it is gone (-N: killed by signal N)."""
        if self._child is None:
            return None
        return self._child.poll()

    def exited_early(self) -> str | None:
        """If the process we spawned has already died: the tail of its log."""
        if self._child is None or self._child.poll() is None:
            return None
        tail = self.log_file.read_text(errors="replace").strip().splitlines()[-3:]
        return " | ".join(tail) or f"exit code {self._child.returncode}"

    def stop(self, timeout: float = 15.0, sig: signal.Signals = signal.SIGTERM) -> bool:
        """Signal the process and wait for it to go; SIGKILL after ``timeout``."""
        pid = self.pid
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        deadline = time.monotonic() + timeout
        while self.running() and time.monotonic() < deadline:
            self._reap()
            time.sleep(0.05)
        if self.running():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            wait_until(self._gone, 10, f"{self.name} exit")
        self._reap()
        self.pid_file.unlink(missing_ok=True)
        return True

    def _gone(self) -> bool:
        self._reap()
        return not self.running()

    def _reap(self) -> None:
        if self._child is not None:
            self._child.poll()
