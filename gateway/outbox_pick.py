"""Which ready rows the next uplink batch takes (:meth:`gateway.outbox.Outbox.next_batch`).

In this order, each row once, until ``max_records`` rows or ``max_bytes`` (the
first row always fits): every ready row of the priority lane, oldest first;
then, unless ``priority_only``, the ``live`` newest ready rows (a backlog is
draining: live data must not wait behind it); then the oldest ready rows, high
before bulk. Reads only: the caller marks what it got inflight.
"""

from __future__ import annotations

import sqlite3

from gateway.outbox_rows import PRIORITY, ROW_COLUMNS, Row


def pick(
    conn: sqlite3.Connection,
    max_records: int,
    max_bytes: int,
    live: int,
    *,
    priority_only: bool = False,
) -> dict[int, Row]:
    queries: list[tuple[str, tuple[int, ...]]] = [
        (
            f"SELECT {ROW_COLUMNS} FROM outbox WHERE state = 0 AND prio = ? ORDER BY id LIMIT ?",
            (PRIORITY, max_records),
        )
    ]
    if not priority_only:
        if live > 0:
            queries.append(
                (
                    f"SELECT {ROW_COLUMNS} FROM outbox NOT INDEXED"  # rowid order, newest first
                    " WHERE state = 0 ORDER BY id DESC LIMIT ?",
                    (live,),
                )
            )
        queries.append(
            (
                f"SELECT {ROW_COLUMNS} FROM outbox WHERE state = 0 ORDER BY prio, id LIMIT ?",
                (max_records,),
            )
        )
    picked: dict[int, Row] = {}
    total = 0
    for sql, params in queries:
        for r in conn.execute(sql, params):
            if len(picked) >= max_records or (total + r[5] > max_bytes and picked):
                break
            if r[0] not in picked:
                picked[r[0]] = Row(*r)
                total += r[5]
    return picked
