"""Re-basing stored receive times after the gateway's wall clock jumped.

A gateway without a real-time clock boots with the time it shut down at and
stamps what it receives with it until NTP steps the clock. When
:class:`gateway.clock.GatewayClock` sees the step, every row this process stored
before it (ids ``first_id..last_id``) was stamped with a clock that was off by
the step: its ``rx_ms`` moves by the step, and so does the ``ts`` of the
gateway's own readings (its health telemetry: the device time of those *is* the
gateway's clock). Rows stored by an earlier run are left alone (that run's clock
is not known to have been wrong).

Once the clock is right (synced), readings of those rows whose device time is
more than ``ahead_ms`` ahead of their re-based receive time are flagged
``CLOCK_SUSPECT`` (before the step they could not be judged: the gateway's own
clock was behind). Done in SQL (``json_extract``/``json_set`` on the stored JSON)
in one transaction.
"""

from __future__ import annotations

import sqlite3

from gateway.outbox_rows import CLOCK_SUSPECT, Rebased

_TS = "json_extract(CAST(payload AS TEXT), '$.ts')"


def rebase(
    cur: sqlite3.Cursor,
    jump_ms: int,
    first_id: int,
    last_id: int,
    own_device: str,
    ahead_ms: int | None,
) -> Rebased:
    """Move the rows ``first_id..last_id`` by ``jump_ms``; flag far-ahead device times."""
    cur.execute(
        "UPDATE outbox SET rx_ms = max(0, rx_ms + ?) WHERE id BETWEEN ? AND ?",
        (jump_ms, first_id, last_id),
    )
    moved = cur.rowcount
    cur.execute(
        "UPDATE outbox SET payload = CAST(json_set(CAST(payload AS TEXT), '$.ts',"
        f" max(0, {_TS} + ?)) AS BLOB) WHERE id BETWEEN ? AND ? AND device = ?"
        " AND channel IN ('telemetry', 'event')",
        (jump_ms, first_id, last_id, own_device),
    )
    own = cur.rowcount
    flagged = 0
    if ahead_ms is not None:
        cur.execute(
            f"UPDATE outbox SET flags = flags | {CLOCK_SUSPECT} WHERE id BETWEEN ? AND ?"
            " AND channel IN ('telemetry', 'event') AND device != ?"
            f" AND flags & {CLOCK_SUSPECT} = 0 AND {_TS} > rx_ms + ?",
            (first_id, last_id, own_device, ahead_ms),
        )
        flagged = cur.rowcount
    return Rebased(moved, own, flagged)
