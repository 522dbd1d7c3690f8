"""Child processes of a supervisor (the demo), supervised the way systemd runs them.

A :class:`Child` is one subprocess whose output goes to ``log_dir/<name>.log``.
A :class:`Supervisor` restarts a child that ends for a transient reason (any
exit code not in ``runtime.exits.PERMANENT``, a crash, a signal such as a
user's SIGKILL) after a jittered backoff (1 s doubling to 30 s, back to 1 s once
it has run a minute), and raises :class:`PermanentExit` for a child that stops
with a permanent code (bad setting, refused login, session taken over, missing
database): restarting it cannot help, so the supervisor stops everything with
that child's last log line, like ``RestartPreventExitStatus`` in the units.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from runtime.backoff import Backoff
from runtime.exits import ExitCode, is_permanent

RESTART_MIN_S = 1.0
RESTART_MAX_S = 30.0
STABLE_S = 60.0  # a child that ran this long restarts after RESTART_MIN_S again


def gramlink_argv(*args: str) -> list[str]:
    """``python -m gramlink ARGS`` with this interpreter."""
    return [sys.executable, "-m", "gramlink", *args]


def describe_exit(code: int) -> str:
    """``exit 4 (refused)`` / ``killed by SIGKILL`` for a Popen return code."""
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
        return f"killed by signal {-code}"
    with contextlib.suppress(ValueError):
        return f"exit {code} ({ExitCode(code).name.lower().replace('_', ' ')})"
    return f"exit {code}"


class Child:
    """One subprocess whose output goes to ``log_dir/<name>.log`` (appended across restarts)."""

    def __init__(
        self, name: str, argv: Sequence[str], env: Mapping[str, str], log_dir: Path
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.env = {**os.environ, **env}
        self.log_file = log_dir / f"{name}.log"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as log:
            self._process = subprocess.Popen(
                self.argv,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches the supervisor only
            )

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def exit_code(self) -> int | None:
        return None if self._process is None else self._process.poll()

    def last_lines(self, count: int = 3) -> str:
        try:
            lines = self.log_file.read_text(errors="replace").strip().splitlines()
        except FileNotFoundError:
            return ""
        return " | ".join(lines[-count:])

    def stop(self, timeout: float = 15.0) -> None:
        process = self._process
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            process.wait(5)


class PermanentExit(Exception):
    """A child stopped with a permanent exit code; ``str()`` is its one line."""

    def __init__(self, child: Child, code: int) -> None:
        super().__init__(
            f"{child.name} stopped: {describe_exit(code)}: {child.last_lines(1)} "
            f"(log {child.log_file})"
        )
        self.child = child
        self.code = code


@dataclass
class _Watch:
    child: Child
    backoff: Backoff
    started: float
    restarts: int = 0
    restart_at: float | None = None  # set while it is down and waiting


class Supervisor:
    """Starts children, restarts the transient failures, stops on a permanent one."""

    def __init__(
        self,
        say: Callable[[str], None],
        *,
        restart_min_s: float = RESTART_MIN_S,
        restart_max_s: float = RESTART_MAX_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._say = say
        self._min = restart_min_s
        self._max = restart_max_s
        self._clock = clock
        self._watches: list[_Watch] = []

    def start(self, child: Child) -> Child:
        child.start()
        self._watches.append(_Watch(child, Backoff(self._min, self._max), self._clock()))
        return child

    @property
    def children(self) -> list[Child]:
        return [watch.child for watch in self._watches]

    def restarts(self, name: str) -> int:
        return sum(w.restarts for w in self._watches if w.child.name == name)

    def poll(self) -> None:
        """Look at every child once: restart what is due; raise PermanentExit if one must stop."""
        now = self._clock()
        for watch in self._watches:
            child = watch.child
            if watch.restart_at is not None:
                if now >= watch.restart_at:
                    child.start()
                    watch.restart_at, watch.started = None, now
                    watch.restarts += 1
                    self._say(f"{child.name} restarted (pid {child.pid}, restart {watch.restarts})")
                continue
            code = child.exit_code()
            if code is None:
                if now - watch.started >= STABLE_S:
                    watch.backoff.reset()
                continue
            if is_permanent(code):
                raise PermanentExit(child, code)
            delay = watch.backoff.next()
            watch.restart_at = now + delay
            self._say(f"{child.name} ended ({describe_exit(code)}); restarting in {delay:.1f} s")

    def down(self) -> list[str]:
        """Children waiting to be restarted, for the live line."""
        return [w.child.name for w in self._watches if w.restart_at is not None]

    def stop_all(self) -> None:
        for watch in reversed(self._watches):
            watch.restart_at = None
            watch.child.stop()
