"""Quarantine: device messages that broke the contract, kept for a technician.

A bounded SQLite table (``quarantine`` in the gateway's database): reason (a
``contract.DecodeReason`` value, or ``dynsec_bad_update`` / ``dynsec_refused``
for a credential update from the API that could not be applied), topic, a
payload excerpt (first 512 bytes, every ``patient_id`` value redacted:
``contract.pseudonym.redacted_excerpt``), receive time. When it holds ``max_rows``, the
oldest entries are deleted (the count ``quarantined_total`` still grows): the
table is for looking at recent failures, the counter for alerting. Nothing
quarantined is ever forwarded.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from contract.pseudonym import redacted_excerpt
from gateway.errors import StoreError
from gateway.sqlite import connect

EXCERPT_BYTES: Final = 512

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS quarantine (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    rx_ms INTEGER NOT NULL,
    reason TEXT NOT NULL,
    topic TEXT NOT NULL,
    detail TEXT NOT NULL,
    excerpt BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


@dataclass(frozen=True, slots=True)
class Rejected:
    rx_ms: int
    reason: str
    topic: str
    detail: str
    payload: bytes


class Quarantine:
    """Bounded store of rejected messages; shared by the ingest and dynsec threads (locked)."""

    def __init__(self, path: Path, max_rows: int) -> None:
        self.max_rows = max_rows
        self._lock = threading.Lock()
        try:
            self._conn = connect(path)
            self._conn.executescript(_SCHEMA)
            row = self._conn.execute(
                "SELECT value FROM meta WHERE key = 'quarantined_total'"
            ).fetchone()
        except sqlite3.Error as exc:
            raise StoreError(f"quarantine: {exc}") from exc
        self.total = int(row[0]) if row else 0

    def add(self, entries: Sequence[Rejected]) -> None:
        if not entries:
            return
        with self._lock:
            self._add(entries)

    def _add(self, entries: Sequence[Rejected]) -> None:
        try:
            self._conn.execute("BEGIN IMMEDIATE")
            self._conn.executemany(
                "INSERT INTO quarantine (rx_ms, reason, topic, detail, excerpt)"
                " VALUES (?, ?, ?, ?, ?)",
                [
                    (
                        e.rx_ms,
                        e.reason,
                        e.topic[:256],
                        e.detail[:300],
                        redacted_excerpt(e.payload, EXCERPT_BYTES),
                    )
                    for e in entries
                ],
            )
            self._conn.execute(
                "DELETE FROM quarantine WHERE id <= (SELECT max(id) FROM quarantine) - ?",
                (self.max_rows,),
            )
            self._conn.execute(
                "INSERT INTO meta VALUES ('quarantined_total', ?) ON CONFLICT(key)"
                " DO UPDATE SET value = value + excluded.value",
                (len(entries),),
            )
            self._conn.execute("COMMIT")
        except sqlite3.Error as exc:
            self._conn.execute("ROLLBACK")
            raise StoreError(f"quarantine: {exc}") from exc
        self.total += len(entries)

    def recent(self, limit: int = 100) -> list[Rejected]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT rx_ms, reason, topic, detail, excerpt FROM quarantine"
                " ORDER BY id DESC LIMIT ?",
                (limit,),
            ).fetchall()
        return [Rejected(*r) for r in rows]

    def close(self) -> None:
        with self._lock:
            self._conn.close()
