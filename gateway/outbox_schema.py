"""The outbox's tables, and what a store written by an older gateway gains on first start."""

from __future__ import annotations

import sqlite3
from typing import Final

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    prio INTEGER NOT NULL,
    state INTEGER NOT NULL DEFAULT 0,
    device TEXT NOT NULL,
    channel TEXT NOT NULL,
    payload BLOB NOT NULL,
    rx_ms INTEGER NOT NULL,
    size INTEGER NOT NULL,
    batch INTEGER,
    flags INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS outbox_ready ON outbox (state, prio, id);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""
_BATCH_INDEX: Final = "CREATE INDEX IF NOT EXISTS outbox_batch ON outbox (batch)"


def migrate(conn: sqlite3.Connection) -> None:
    """Create the tables, add the columns an older store lacks, index batches."""
    conn.executescript(_SCHEMA)
    columns = {r[1] for r in conn.execute("PRAGMA table_info(outbox)")}
    if "batch" not in columns:  # a store written before storage receipts
        conn.execute("ALTER TABLE outbox ADD COLUMN batch INTEGER")
    if "flags" not in columns:  # a store written before clock sanity
        conn.execute("ALTER TABLE outbox ADD COLUMN flags INTEGER NOT NULL DEFAULT 0")
    conn.execute(_BATCH_INDEX)


def next_id(conn: sqlite3.Connection) -> int:
    """The id the next row gets: above every id ever used (AUTOINCREMENT), deleted or not."""
    (last_id,) = conn.execute("SELECT coalesce(max(id), 0) FROM outbox").fetchone()
    used = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'").fetchone()
    return max(int(last_id), int(used[0]) if used else 0) + 1
