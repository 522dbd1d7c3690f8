"""One log format for every process: ``time level=... logger=... event=name key=value ...``.

Libraries only log; each process calls :func:`configure` once, in its entry
point. :func:`kv` escapes what it quotes, so a payload excerpt can never add a
line, a NUL or a forged ``level=ERROR`` to the log. :class:`Throttle` keeps a
per-message warning to its first line, then one line a minute with the count;
:func:`configure` also starts the one thread per process that writes the count
of a burst followed by silence (and the last counts at exit).
"""

from __future__ import annotations

import atexit
import logging
import sys
import threading
import time
import weakref
from collections.abc import Callable
from typing import Final, TextIO

FORMAT = "%(asctime)s level=%(levelname)s logger=%(name)s %(message)s"
# Chatty third-party loggers: WARNING unless the process runs at debug level
# (httpx logs every InfluxDB write at INFO; uvicorn.access every request; uvicorn
# and alembic their start-up in free text: the API says ``event=api_started``).
QUIET_LOGGERS = (
    "httpx",
    "httpcore",
    "paho",
    "urllib3",
    "uvicorn",
    "uvicorn.access",  # uvicorn sets these two itself when it is given a log level
    "uvicorn.error",
    "alembic",
    "influxdb_client",
)
_PLAIN_SAFE = frozenset(' "=\\')
FLUSH_EVERY_S: Final = 10.0  # how late a burst's count may come after its interval


def escape(text: str) -> str:
    """``text`` as a log value: quoted when needed, control characters written as escapes."""
    if text and text.isprintable() and not _PLAIN_SAFE.intersection(text):
        return text
    out = []
    for ch in text:
        if ch == "\\" or ch == '"':
            out.append("\\" + ch)
        elif ch.isprintable():
            out.append(ch)
        else:
            out.append(ch.encode("unicode_escape").decode("ascii"))
    return '"' + "".join(out) + '"'


def kv(event: str, **fields: object) -> str:
    """One log line body: ``event=name k=v ...``."""
    parts = [f"event={escape(event)}"]
    parts.extend(f"{key}={escape(str(value))}" for key, value in fields.items())
    return " ".join(parts)


def configure(
    level: str, *, stream: TextIO | None = None, flush_every_s: float = FLUSH_EVERY_S
) -> None:
    """Configure logging for this process (call once, from its entry point), and start
    flushing every :class:`Throttle`'s counts every ``flush_every_s`` and at exit."""
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise ValueError(f"unknown log level {level!r}")
    logging.basicConfig(stream=stream or sys.stderr, level=numeric, format=FORMAT, force=True)
    # A logger's own level decides alone whether its records reach the handler
    # (the root's level is not checked again): never below the process's level.
    quiet = logging.NOTSET if numeric <= logging.DEBUG else max(numeric, logging.WARNING)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(quiet)
    _FLUSHER.start(flush_every_s)


class Throttle:
    """Rate-limits log lines by key: the first at once, then one per ``interval_s`` with a count.

    Thread-safe. For warnings a single bad device could otherwise repeat for
    every message it sends.
    """

    def __init__(
        self,
        logger: logging.Logger,
        interval_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._interval_s = interval_s
        self._clock = clock
        self._lock = threading.Lock()
        self._next: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}
        self._pending: dict[str, tuple[int, str]] = {}  # key -> (level, event) of suppressed lines
        if clock is time.monotonic:  # one on a clock of its own is flushed by its owner
            _LIVE.add(self)

    def log(self, level: int, event: str, key: str | None = None, **fields: object) -> bool:
        """Log ``event`` unless a line of the same key went out within the interval.

        Returns whether a line was written. The line after a quiet period
        carries ``suppressed=N``, the lines left out since the previous one.
        """
        if not self._logger.isEnabledFor(level):
            return False
        key = key or event
        now = self._clock()
        with self._lock:
            if now < self._next.get(key, 0.0):
                self._suppressed[key] = self._suppressed.get(key, 0) + 1
                self._pending[key] = (level, event)
                return False
            self._pending.pop(key, None)
            self._next[key] = now + self._interval_s
            suppressed = self._suppressed.pop(key, 0)
        if suppressed:
            fields["suppressed"] = suppressed
        self._logger.log(level, kv(event, **fields))
        return True

    def flush(self, *, force: bool = False) -> int:
        """Write the count of lines suppressed under each key whose interval has passed.

        Call it from a periodic loop (and with ``force`` at shutdown), so that a
        burst followed by silence still ends with its ``suppressed=N`` line.
        Returns the number of lines written.
        """
        now = self._clock()
        due: list[tuple[int, str, int]] = []
        with self._lock:
            for key, (level, event) in list(self._pending.items()):
                if force or now >= self._next.get(key, 0.0):
                    due.append((level, event, self._suppressed.pop(key, 0)))
                    del self._pending[key]
                    self._next[key] = now + self._interval_s
        for level, event, count in due:
            self._logger.log(level, kv(event, suppressed=count))
        return len(due)

    def warning(self, event: str, key: str | None = None, **fields: object) -> bool:
        return self.log(logging.WARNING, event, key, **fields)

    def error(self, event: str, key: str | None = None, **fields: object) -> bool:
        return self.log(logging.ERROR, event, key, **fields)


_LIVE: weakref.WeakSet[Throttle] = weakref.WeakSet()


def flush_all(*, force: bool = False) -> int:
    """:meth:`Throttle.flush` of every throttle of the process; the lines written."""
    return sum(throttle.flush(force=force) for throttle in list(_LIVE))


class _Flusher:
    """The process's one thread that flushes every throttle (started by :func:`configure`)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._every_s = FLUSH_EVERY_S
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def start(self, every_s: float) -> None:
        with self._lock:
            self._every_s = every_s
            if self._thread is not None:
                return  # configured again: the new period applies from the next wait
            self._stop = threading.Event()
            self._thread = threading.Thread(
                target=self._run, args=(self._stop,), name="log-flush", daemon=True
            )
            self._thread.start()
            atexit.register(flush_all, force=True)  # before logging's own shutdown (LIFO)

    def stop(self) -> None:
        with self._lock:
            thread, self._thread = self._thread, None
            self._stop.set()
            atexit.unregister(flush_all)
        if thread is not None:
            thread.join(timeout=5)

    def _run(self, stop: threading.Event) -> None:
        while not stop.wait(self._every_s):
            flush_all()


def stop_flushing() -> None:
    """Stop the flushing thread (tests: a process that called :func:`configure` in-process
    would otherwise write into streams the test has closed)."""
    _FLUSHER.stop()


_FLUSHER: Final = _Flusher()
