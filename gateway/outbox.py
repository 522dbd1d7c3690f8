"""The durable outbox: a SQLite (WAL) queue of readings waiting for the uplink.

Each row is one accepted device message, already pseudonymised and re-encoded:
``id, prio, state, device, channel, payload, rx_ms, size, batch``. Rows move
through a state machine::

    ready (0) --next_batch--> inflight (1) --PUBACK delivered--> sent (2) --receipt--> deleted
      ^  ^                      |    |                             |
      |  +------release---------+    |                             |
      +---------reject---------------+                             |
      +---------expire / every reconnect / start-up----------------+

- ``next_batch`` stamps the rows it hands out for an envelope with the batch's
  ``seq`` (``batch``); relayed singles (state, cmd/ack, twin/reported) carry no
  batch and are deleted on their delivered PUBACK (:meth:`Outbox.ack`);
- release: paho did not take the publish; reject: the broker's PUBACK said not
  delivered (an error code, or 0x10 no matching subscribers), counted in
  ``rejected_total`` (persisted); every inflight row goes back at start-up too;
- sent: the central broker took the envelope; the rows stay until the ingest
  worker that stored them publishes a storage receipt naming the batch
  (``contract.receipts``); :meth:`Outbox.receipted` deletes every row still
  stamped with a named batch, whatever its state (a receipt arriving before the
  PUBACK, or after a reconnect put the rows back to ready, is just as true);
- expire: sent rows without a receipt after the receipt timeout, after every
  uplink reconnect (:meth:`Outbox.resend_sent`) and at start-up go back to
  ready and are sent again in a new batch. Storage stays exactly-once: a
  reading's point derives from (device, device time, seq) and the model the
  record carries, so a resend lands on the same point.

Batch numbers grow across restarts; a new store starts them at the clock's
milliseconds, so a receipt still queued for an earlier (wiped) store never names
a batch of the new one.

Bounds: the sum of row ``size`` stays under ``budget_bytes``; when a new row
does not fit, rows are evicted lane by lane (:mod:`gateway.outbox_budget`).
Every eviction is counted in ``dropped_total`` (persisted) and logged by the caller.

Lanes and flags: :mod:`gateway.outbox_rows` (a ``prio`` column: priority, high,
bulk; a ``flags`` column: clock suspect). The priority lane leads every batch
(:mod:`gateway.outbox_pick`). Tables and upgrades of older stores:
:mod:`gateway.outbox_schema`. After a wall-clock jump, :meth:`Outbox.rebase`
moves the receive times this process stored (:mod:`gateway.outbox_rebase`).

Two connections: the ingest thread writes through :meth:`append` (synchronous
FULL by default: a reading is on disk before the local broker gets its PUBACK);
the uplink thread uses the others (NORMAL: losing a delete only means a resend).
sqlite3 errors are mapped to :class:`StoreError` here.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from gateway.outbox_budget import make_room
from gateway.outbox_pick import pick
from gateway.outbox_rebase import rebase
from gateway.outbox_rows import (
    BULK,
    CLOCK_SUSPECT,
    HIGH,
    INFLIGHT,
    PRIORITY,
    READY,
    ROW_OVERHEAD,
    SENT,
    AppendResult,
    Expired,
    NewRow,
    OutboxStats,
    Rebased,
    Row,
    now_ms,
)
from gateway.outbox_schema import migrate, next_id
from gateway.sqlite import connect, mapped

__all__ = [
    "BULK",
    "CLOCK_SUSPECT",
    "HIGH",
    "PRIORITY",
    "READY",
    "ROW_OVERHEAD",
    "AppendResult",
    "Expired",
    "NewRow",
    "Outbox",
    "OutboxStats",
    "Rebased",
    "Row",
    "now_ms",
]


class Outbox:
    """The queue; ``append`` from one thread, the rest from one other thread."""

    def __init__(self, path: Path, budget_bytes: int, synchronous: str = "full") -> None:
        self.path = path
        self.budget_bytes = budget_bytes
        with mapped("outbox"):
            self._w = connect(path, synchronous)
            migrate(self._w)
            self._u = connect(path, "normal")
            # Start-up: whatever was in flight or unreceipted goes back to ready (each
            # keeps its batch: a receipt still queued for us deletes it all the same).
            self._w.execute("UPDATE outbox SET state = 0 WHERE state != 0")
            rows, size = self._w.execute(
                "SELECT count(*), coalesce(sum(size), 0) FROM outbox"
            ).fetchone()
            if self._w.execute("SELECT 1 FROM meta WHERE key = 'batch_seq'").fetchone() is None:
                self._w.execute("INSERT INTO meta VALUES ('batch_seq', ?)", (now_ms(),))
        self.run_first_id = next_id(self._w)  # this process's rows: from here on
        self._lock = threading.Lock()
        self._stats_lock = threading.Lock()
        self._r: sqlite3.Connection | None = None
        self._rows = int(rows)
        self._bytes = int(size)
        self._inflight = 0
        self._sent = 0
        self._sent_at: dict[int, float] = {}  # batch seq -> when its PUBACK came (monotonic)
        self._dropped = self.meta("dropped_total")
        self._rejected = self.meta("rejected_total")
        self._batch_seq = self.meta("batch_seq")
        self._suspect = self.meta("clock_suspect_total")
        self.first_run_this_run = False  # the store's first run is this process's
        self._appended = 0

    def close(self) -> None:
        self._w.close()
        self._u.close()
        if self._r is not None:
            self._r.close()

    # -- counters --------------------------------------------------------------------------
    def meta(self, key: str) -> int:
        with mapped("outbox"):
            row = self._u.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return int(row[0]) if row else 0

    @property
    def dropped_total(self) -> int:
        return self._dropped

    @property
    def rejected_total(self) -> int:
        return self._rejected

    def stats(self) -> OutboxStats:
        """Counters for the health reading (any thread: its own read connection)."""
        with mapped("outbox"), self._stats_lock:
            if self._r is None:
                self._r = connect(self.path, "normal")
            row = self._r.execute("SELECT rx_ms FROM outbox ORDER BY id LIMIT 1").fetchone()
        oldest = row[0] if row else None
        with self._lock:
            first_sent = min(self._sent_at.values(), default=None)
            return OutboxStats(
                self._rows,
                self._rows - self._inflight - self._sent,
                self._bytes,
                oldest,
                self._dropped,
                self._rejected,
                self._sent,
                None if first_sent is None else max(0.0, time.monotonic() - first_sent),
                self._appended,
                self._suspect,
            )

    def first_run_ms(self, now: int) -> int:
        """When this store was first used (persisted; ``now`` the first time it is asked)."""
        with mapped("outbox"):
            cur = self._w.execute("INSERT OR IGNORE INTO meta VALUES ('first_run_ms', ?)", (now,))
            self.first_run_this_run = self.first_run_this_run or cur.rowcount > 0
        return self.meta("first_run_ms")

    def ready_count(self) -> int:
        with self._lock:
            return self._rows - self._inflight - self._sent

    # -- ingest side -----------------------------------------------------------------------
    def append(self, rows: Sequence[NewRow]) -> AppendResult:
        """Store ``rows`` in one transaction (committed, durable, when this returns)."""
        if not rows:
            return AppendResult(0, 0, 0)
        incoming = sum(r.size for r in rows)
        with mapped("outbox"):
            cur = self._w.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                with self._lock:
                    over = self._bytes + incoming - self.budget_bytes
                evicted, freed, sent, keep = 0, 0, 0, list(rows)
                if over > 0:
                    evicted, freed, sent, keep = make_room(cur, over, keep)
                cur.executemany(
                    "INSERT INTO outbox (prio, device, channel, payload, rx_ms, size, flags)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [
                        (r.prio, r.device, r.channel, r.payload, r.rx_ms, r.size, r.flags)
                        for r in keep
                    ],
                )
                refused = len(rows) - len(keep)
                if evicted or refused:
                    self._count(cur, "dropped_total", evicted + refused)
                suspect = sum(1 for r in keep if r.flags & CLOCK_SUSPECT)
                if suspect:
                    self._count(cur, "clock_suspect_total", suspect)
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise
        with self._lock:
            stored = sum(r.size for r in keep)
            self._rows += len(keep) - evicted
            self._bytes += stored - freed
            self._sent -= sent
            self._appended += stored
            self._dropped += evicted + refused
            self._suspect += suspect
        return AppendResult(len(keep), evicted, refused)

    @staticmethod
    def _count(cur: sqlite3.Cursor, key: str, add: int) -> None:
        cur.execute(
            "INSERT INTO meta VALUES (?, ?) ON CONFLICT(key)"
            " DO UPDATE SET value = value + excluded.value",
            (key, add),
        )

    # -- uplink side -----------------------------------------------------------------------
    def next_batch(
        self,
        max_records: int,
        max_bytes: int,
        live: int,
        batch: int | None = None,
        batched: frozenset[str] = frozenset(),
        *,
        priority_only: bool = False,
    ) -> list[Row]:
        """Mark up to ``max_records`` ready rows inflight and return them in id order.

        The priority lane's ready rows come first, whatever else waits. Then,
        unless ``priority_only``: ``live`` > 0 (a backlog is draining): that many
        of the newest ready rows, so live data is not stuck behind the backlog;
        the rest are the oldest ready rows, high priority before bulk. Rows of a
        ``batched`` channel are stamped with ``batch`` (the envelope's seq), the
        others with none.
        """
        with mapped("outbox"):
            picked = pick(self._u, max_records, max_bytes, live, priority_only=priority_only)
            if not picked:
                return []
            ids = sorted(picked)
            stamps = [(batch if picked[i].channel in batched else None, i) for i in ids]
            self._u.execute("BEGIN")
            self._u.executemany("UPDATE outbox SET state = 1, batch = ? WHERE id = ?", stamps)
            self._u.execute("COMMIT")
        with self._lock:
            self._inflight += len(ids)
        return [picked[i] for i in ids]

    def priority_ready(self) -> bool:
        """Whether a priority-lane row is ready (an index lookup; the uplink thread)."""
        with mapped("outbox"):
            row = self._u.execute(
                "SELECT 1 FROM outbox WHERE state = 0 AND prio = ? LIMIT 1", (PRIORITY,)
            ).fetchone()
        return row is not None

    def rebase(self, jump_ms: int, own_device: str, ahead_ms: int | None) -> Rebased:
        """The wall clock jumped by ``jump_ms``: move what this process stored before it.

        Called on the thread that appends (so no row is stamped across the jump).
        """
        with mapped("outbox"):
            cur = self._w.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                (last_id,) = cur.execute("SELECT coalesce(max(id), 0) FROM outbox").fetchone()
                done = rebase(cur, jump_ms, self.run_first_id, int(last_id), own_device, ahead_ms)
                if done.flagged:
                    self._count(cur, "clock_suspect_total", done.flagged)
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise
        with self._lock:
            self._suspect += done.flagged
        return done

    def next_seq(self) -> int:
        """The next batch sequence number (persisted, grows across restarts)."""
        self._batch_seq += 1
        with mapped("outbox"):
            self._u.execute(
                "INSERT INTO meta VALUES ('batch_seq', ?) ON CONFLICT(key)"
                " DO UPDATE SET value = excluded.value",
                (self._batch_seq,),
            )
        return self._batch_seq

    def ack(self, rows: Sequence[Row]) -> None:
        """The next hop acknowledged these relayed singles: delete them."""
        with mapped("outbox"):
            cur = self._u.cursor()
            cur.execute("BEGIN")
            cur.executemany(
                "DELETE FROM outbox WHERE id = ? AND state = 1", [(r.id,) for r in rows]
            )
            gone = cur.rowcount
            cur.execute("COMMIT")
        with self._lock:
            self._rows -= gone
            self._inflight -= gone
            self._bytes -= sum(r.size for r in rows) if gone == len(rows) else 0

    def sent(self, batch: int) -> int:
        """The central broker took envelope ``batch``: its rows wait for their receipt."""
        with mapped("outbox"):
            cur = self._u.execute(
                "UPDATE outbox SET state = 2 WHERE batch = ? AND state = 1", (batch,)
            )
            count = cur.rowcount
        with self._lock:
            self._inflight -= count
            self._sent += count
            if count:
                self._sent_at[batch] = time.monotonic()
        return count

    def receipted(self, ranges: Sequence[tuple[int, int]]) -> int:
        """Storage has the batches in ``ranges`` (inclusive): delete their rows; how many."""
        gone: dict[int, tuple[int, int]] = {}
        with mapped("outbox"):
            cur = self._u.cursor()
            cur.execute("BEGIN IMMEDIATE")  # reads then writes: take the write lock first
            try:
                for first, last in ranges:
                    for state, count, size in cur.execute(
                        "SELECT state, count(*), coalesce(sum(size), 0) FROM outbox"
                        " WHERE batch BETWEEN ? AND ? GROUP BY state",
                        (first, last),
                    ).fetchall():
                        had = gone.get(state, (0, 0))
                        gone[state] = (had[0] + count, had[1] + size)
                    cur.execute("DELETE FROM outbox WHERE batch BETWEEN ? AND ?", (first, last))
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise
        with self._lock:
            for state, (count, size) in gone.items():
                self._rows -= count
                self._bytes -= size
                if state == INFLIGHT:
                    self._inflight -= count
                elif state == SENT:
                    self._sent -= count
            if self._sent_at:
                for first, last in ranges:
                    if last - first < 4096:
                        for seq in range(first, last + 1):
                            self._sent_at.pop(seq, None)
                    else:
                        for seq in [s for s in self._sent_at if first <= s <= last]:
                            del self._sent_at[seq]
        return sum(count for count, _ in gone.values())

    def expire(self, timeout_s: float) -> Expired:
        """Sent batches without a receipt for ``timeout_s`` go back to ready."""
        limit = time.monotonic() - timeout_s
        with self._lock:
            old = [seq for seq, at in self._sent_at.items() if at <= limit]
        return self._unsend(old) if old else Expired(0, 0)

    def resend_sent(self) -> Expired:
        """After a reconnect: every sent, unreceipted batch goes back to ready."""
        with self._lock:
            old = list(self._sent_at)
        return self._unsend(old, every=True)

    def _unsend(self, batches: list[int], every: bool = False) -> Expired:
        with mapped("outbox"):
            cur = self._u.cursor()
            cur.execute("BEGIN")
            if every:
                cur.execute("UPDATE outbox SET state = 0 WHERE state = 2")
            else:
                cur.executemany(
                    "UPDATE outbox SET state = 0 WHERE batch = ? AND state = 2",
                    [(b,) for b in batches],
                )
            count = cur.rowcount
            cur.execute("COMMIT")
        with self._lock:
            self._sent -= count
            for b in batches:
                self._sent_at.pop(b, None)
        return Expired(len(batches), count)

    def release(self, rows: Sequence[Row]) -> None:
        """Put inflight rows back to ready (a publish was refused)."""
        self._back_to_ready(rows, rejected=False)

    def reject(self, rows: Sequence[Row]) -> None:
        """The broker refused the message carrying these rows: back to ready, counted."""
        self._back_to_ready(rows, rejected=True)

    def _back_to_ready(self, rows: Sequence[Row], *, rejected: bool) -> None:
        with mapped("outbox"):
            cur = self._u.cursor()
            cur.execute("BEGIN")
            cur.executemany(
                "UPDATE outbox SET state = 0 WHERE id = ? AND state = 1", [(r.id,) for r in rows]
            )
            count = cur.rowcount
            if rejected:
                cur.execute(
                    "INSERT INTO meta VALUES ('rejected_total', 1) ON CONFLICT(key)"
                    " DO UPDATE SET value = value + 1"
                )
            cur.execute("COMMIT")
        with self._lock:
            self._inflight -= count
            if rejected:
                self._rejected += 1
