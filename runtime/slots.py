"""A worker's instance number on its host: the lowest slot no running process holds.

Slot N is held by an exclusive ``flock`` on ``<state_dir>/<name>-N.lock`` for the
life of the process. The kernel drops the lock when the process ends however it
ends (exit, crash, SIGKILL), so a restarted worker finds its slot free again and,
being the lowest free one, takes the same number back: two workers started the
same way get slots 1 and 2 and keep them across restarts. Nothing is written
into the lock files; they are harmless to delete while no worker runs.

Errors: :class:`SlotError` (permanent: the state directory cannot be used, or
every slot is taken). Its message names the directory.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

MAX_SLOTS = 64
_NOT_LABEL = re.compile(r"[^a-z0-9-]+")


class SlotError(OSError):
    """The state directory is unusable or every slot is held."""


@dataclass
class Slot:
    """A held slot; the lock goes with :meth:`release` or with the process."""

    number: int
    path: Path
    _fd: int | None

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the only descriptor drops the flock
            self._fd = None

    def __enter__(self) -> Slot:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def claim(state_dir: Path, name: str, limit: int = MAX_SLOTS) -> Slot:
    """Hold the lowest free slot ``1..limit`` of ``name`` under ``state_dir``."""
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SlotError(f"cannot create {state_dir}: {exc.strerror}") from exc
    for number in range(1, limit + 1):
        path = state_dir / f"{name}-{number}.lock"
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise SlotError(f"cannot open {path}: {exc.strerror}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                continue
            raise SlotError(f"cannot lock {path}: {exc.strerror}") from exc
        return Slot(number, path, fd)
    raise SlotError(f"all {limit} slots of {name} in {state_dir} are held by running processes")


def host_label(max_len: int = 20, hostname: str | None = None) -> str:
    """This host's short name as an id part: lower case, ``[a-z0-9-]``, at most ``max_len``.

    A name too long is cut and given four hex digits of its hash, so two long
    names that share a prefix still differ.
    """
    full = (hostname if hostname is not None else socket.gethostname()).lower()
    label = _NOT_LABEL.sub("-", full.split(".", 1)[0]).strip("-") or "host"
    if len(label) <= max_len:
        return label
    digest = hashlib.sha256(full.encode()).hexdigest()[:4]
    return f"{label[: max_len - 5].rstrip('-')}-{digest}"
