"""The outbox's disk budget: which rows go when a new row does not fit.

Ready and sent rows are evicted (a sent row is no safer than a ready one until
its receipt); inflight rows never. Lane by lane, least important first
(``outbox_rows.LANES``: bulk, then high, then priority): first the lane's oldest
stored rows, then, if that was not enough, the lane's new rows are refused. So
a new bulk row never evicts a high or priority row, and a new priority row
evicts bulk and high rows before the oldest priority row.
"""

from __future__ import annotations

import sqlite3

from gateway.outbox_rows import LANES, ROW_OVERHEAD, SENT, NewRow


def make_room(
    cur: sqlite3.Cursor, over: int, rows: list[NewRow]
) -> tuple[int, int, int, list[NewRow]]:
    """Free ``over`` bytes: (rows evicted, bytes freed, sent rows evicted, new rows to store)."""
    evicted = freed = sent = 0
    for lane in LANES:
        if freed >= over:
            break
        count, size, was_sent = _evict(cur, lane, over - freed)
        evicted, freed, sent = evicted + count, freed + size, sent + was_sent
        while freed < over and any(r.prio == lane for r in rows):
            over -= rows.pop(next(i for i, r in enumerate(rows) if r.prio == lane)).size
    while freed < over and rows:  # a lane of its own (not in LANES): refuse the newest
        over -= rows.pop().size
    return evicted, freed, sent, rows


def _evict(cur: sqlite3.Cursor, prio: int, need: int) -> tuple[int, int, int]:
    """Delete the oldest ready or sent rows of ``prio`` until ``need`` bytes are free."""
    victims = cur.execute(
        "SELECT id, size, state FROM outbox WHERE state != 1 AND prio = ? ORDER BY id LIMIT ?",
        (prio, 1 + need // ROW_OVERHEAD),
    ).fetchall()
    chosen, freed, sent = [], 0, 0
    for row_id, size, state in victims:
        if freed >= need:
            break
        chosen.append((row_id,))
        freed += size
        sent += state == SENT
    cur.executemany("DELETE FROM outbox WHERE id = ? AND state != 1", chosen)
    return len(chosen), freed, sent
