"""The gateway's clock: wall time, jumps against the monotonic clock, and whether it is synced.

A centre gateway (a Pi) has no real-time clock: it boots with the time it shut
down at (fake-hwclock) and runs on it until NTP steps the clock, possibly hours
or days later. :meth:`GatewayClock.check` (called every ~0.2 s by the ingest
thread) compares ``wall - monotonic`` with the last check: a change of at least
``jump_ms`` is a step of the wall clock (NTP slews smaller errors), returned so
the caller re-bases what it stored (:meth:`gateway.outbox.Outbox.rebase`).
Receive times are taken on the monotonic clock and turned into wall time at
store time (:meth:`wall_of`), so a reading received before a step and stored
after it is stamped consistently.

Synced: the kernel's clock status (``adjtimex``, read only: ``TIME_ERROR`` means
no time source has disciplined the clock; systemd-timesyncd and chrony clear it).
When the status cannot be read the clock is taken as synced.

Test hook (``GRAMLINK_GATEWAY_CLOCK_OFFSET_FILE``, never for production): a file
holding ``<offset_ms> [synced|unsynced]``; the offset is added to the system's
wall clock and the word overrides the kernel's status. It is read again at
every check, so a test makes the wall clock jump by rewriting it, without
touching the system time.
"""

from __future__ import annotations

import ctypes
import logging
import time
from pathlib import Path
from typing import Final

from runtime.logs import kv

log = logging.getLogger(__name__)

TIME_ERROR: Final = 5  # adjtimex: the clock is not synchronised
_TIMEX_BYTES: Final = 512  # struct timex is 208 bytes on 64-bit Linux; room to spare


def kernel_synced() -> bool | None:
    """The kernel's view (None: cannot tell, e.g. not Linux)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        state = int(libc.adjtimex(ctypes.create_string_buffer(_TIMEX_BYTES)))
    except (OSError, AttributeError):
        return None
    return None if state < 0 else state != TIME_ERROR


class GatewayClock:
    """Wall time in ms (plus the test hook's offset) and step detection."""

    def __init__(self, jump_ms: int = 60_000, offset_file: Path | None = None) -> None:
        self.jump_ms = jump_ms
        self.offset_file = offset_file
        self._offset_ms = 0
        self._synced_hook: bool | None = None
        self._hook_text: str | None = None
        self._read_hook()
        self._base = self.now_ms() - time.monotonic_ns() // 1_000_000
        self.jumps = 0

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000 + self._offset_ms

    def wall_of(self, mono_ns: int) -> int:
        """The wall time (ms) of a ``time.monotonic_ns()`` instant, as of the last check."""
        return self._base + mono_ns // 1_000_000

    def synced(self) -> bool:
        if self._synced_hook is not None:
            return self._synced_hook
        found = kernel_synced()
        return True if found is None else found

    def check(self) -> int:
        """The wall clock's step since the last check in ms (0: none); re-bases :meth:`wall_of`."""
        self._read_hook()
        base = self.now_ms() - time.monotonic_ns() // 1_000_000
        step = base - self._base
        self._base = base
        if abs(step) < self.jump_ms:
            return 0
        self.jumps += 1
        return step

    def _read_hook(self) -> None:
        path = self.offset_file
        if path is None:
            return
        try:
            text = path.read_text()
        except OSError:
            return
        if text == self._hook_text:
            return
        self._hook_text = text
        words = text.split()
        try:
            self._offset_ms = int(words[0]) if words else 0
        except ValueError:
            log.warning(kv("clock_hook_unreadable", file=str(path)))
            return
        word = words[1] if len(words) > 1 else ""
        self._synced_hook = {"synced": True, "unsynced": False}.get(word)
