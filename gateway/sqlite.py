"""The gateway's one SQLite database file, opened the same way by every store in it."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from gateway.errors import StoreError


def connect(path: Path, synchronous: str | None = None) -> sqlite3.Connection:
    """Open (creating its folder) in autocommit mode, WAL, waiting up to 30 s on a lock.

    Stores use their connection from several threads under their own lock.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30.0)
    conn.execute("PRAGMA journal_mode=WAL")
    if synchronous is not None:
        conn.execute(f"PRAGMA synchronous={synchronous.upper()}")
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


@contextmanager
def mapped(store: str) -> Iterator[None]:
    """sqlite3 errors inside become the gateway's :class:`StoreError` naming the store."""
    try:
        yield
    except sqlite3.Error as exc:
        raise StoreError(f"{store}: {exc}") from exc


def open_store(path: Path, schema: str, store: str) -> sqlite3.Connection:
    """:func:`connect`, then create the store's tables if they are missing."""
    with mapped(store):
        conn = connect(path)
        conn.executescript(schema)
        return conn
