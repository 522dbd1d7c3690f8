"""The gateway's one SQLite database file, opened the same way by every store in it."""

from __future__ import annotations

import sqlite3
from pathlib import Path


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
