"""The priority lane, the byte cap, clock sanity and autonomy as units (no brokers)."""

from __future__ import annotations

import json
import time
from pathlib import Path

from gateway.autonomy import MAX_H, InflowMeter, autonomy_h
from gateway.clock import GatewayClock
from gateway.clock_sanity import ClockSanity
from gateway.outbox import BULK, CLOCK_SUSPECT, HIGH, PRIORITY, NewRow, Outbox
from gateway.rate_cap import TokenBucket

DAY_MS = 86_400_000


def _row(prio: int, n: int, size: int = 100) -> NewRow:
    return NewRow(prio, f"dev-{n % 3}", "telemetry", b"x" * size, n)


def test_priority_rows_lead_the_next_batch_whatever_backlog_waits(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "q.sqlite3", 10**7)
    box.append([_row(HIGH, n) for n in range(500)] + [_row(BULK, n) for n in range(500, 1000)])
    box.append([_row(PRIORITY, 1000), _row(PRIORITY, 1001)])
    assert box.priority_ready()
    rows = box.next_batch(10, 10**6, live=3)
    assert {r.rx_ms for r in rows} >= {1000, 1001}  # not behind 500 older high rows
    assert box.priority_ready() is False
    # priority_only: a batch of priority rows alone (the drain is waiting for the cap)
    box.append([_row(PRIORITY, 1002)])
    assert [r.rx_ms for r in box.next_batch(10, 10**6, live=3, priority_only=True)] == [1002]
    box.close()


def test_the_disk_budget_evicts_bulk_then_high_and_clinical_rows_last(tmp_path: Path) -> None:
    size = _row(BULK, 0).size
    box = Outbox(tmp_path / "q.sqlite3", 10 * size)
    box.append([_row(PRIORITY, 0), *(_row(HIGH, n) for n in (1, 2)), _row(BULK, 3)])
    box.append([_row(BULK, n) for n in range(4, 10)])  # full
    assert box.append([_row(PRIORITY, 10), _row(PRIORITY, 11)]).evicted == 2  # bulk 3, 4
    assert box.append([_row(BULK, 12)]).evicted == 1  # bulk 5: bulk makes room in bulk
    result = box.append([_row(PRIORITY, n) for n in range(13, 20)])
    assert (result.evicted, result.refused) == (7, 0)  # the five bulk rows, then both high
    assert box.append([_row(BULK, 20)]).refused == 1  # nothing left a bulk row may evict
    assert box.append([_row(PRIORITY, 21)]).evicted == 1  # the oldest clinical row, last
    left = box.next_batch(100, 10**6, live=0)
    assert [r.rx_ms for r in left] == [10, 11, *range(13, 20), 21]
    box.close()


def test_the_token_bucket_keeps_the_average_rate_and_lets_a_batch_into_debt() -> None:
    now = 100.0
    bucket = TokenBucket(1000, now=now)
    sent = 0
    while now < 160.0:  # a minute of 1400-byte batches
        wait = bucket.wait_s(now)
        if wait > 0:
            now += wait
            continue
        bucket.charge(1400, now)
        sent += 1400
    assert abs(sent / 60 - 1000) / 1000 < 0.05
    assert TokenBucket(0).wait_s() == 0.0  # off


def test_autonomy_is_room_over_inflow() -> None:
    meter = InflowMeter(window_s=10)
    assert meter.sample(0, now=0.0) is None  # no window yet
    assert meter.sample(3600, now=1.0) == 3600.0  # bytes per second
    assert autonomy_h(3600 * 3600 * 5, 3600.0) == 5.0
    assert meter.sample(3600, now=20.0) is not None and meter.sample(3600, now=31.0) == 0.0
    assert autonomy_h(10, 0.0) == MAX_H
    assert autonomy_h(0, 5.0) == 0.0


def test_the_clock_hook_steps_the_wall_clock_and_says_synced(tmp_path: Path) -> None:
    hook = tmp_path / "offset"
    hook.write_text(f"{-2 * DAY_MS} unsynced")
    clock = GatewayClock(jump_ms=60_000, offset_file=hook)
    assert abs(clock.now_ms() + 2 * DAY_MS - time.time() * 1000) < 5_000
    assert clock.synced() is False and clock.check() == 0
    hook.write_text("0 synced")
    step = clock.check()
    assert abs(step - 2 * DAY_MS) < 5_000 and clock.synced()
    assert abs(clock.wall_of(time.monotonic_ns()) - time.time() * 1000) < 5_000


class _Clock:
    def __init__(self, synced: bool) -> None:
        self._synced = synced

    def now_ms(self) -> int:
        return int(time.time() * 1000)

    def synced(self) -> bool:
        return self._synced


def test_implausible_device_times() -> None:
    now = int(time.time() * 1000)
    sane = ClockSanity(_Clock(synced=True), first_run_ms=now)
    assert sane.suspect(0, now)  # 1970
    assert not sane.suspect(now - DAY_MS, now)  # a day of device buffering is fine
    assert sane.suspect(now - 30 * DAY_MS, now)  # before the gateway first ran
    assert sane.suspect(now + 2 * 3_600_000, now)  # two hours ahead of a synced clock
    unsure = ClockSanity(_Clock(synced=False), first_run_ms=0)  # a store begun at 1970
    assert unsure.suspect(1_000, now)  # 1970 stays implausible
    assert not unsure.suspect(now + 2 * DAY_MS, now)  # the gateway may be the one behind


def test_a_step_rebases_this_runs_rows_and_the_gateways_own_readings(tmp_path: Path) -> None:
    db = tmp_path / "q.sqlite3"
    old = Outbox(db, 10**7)
    old.append([_row(BULK, 5)])  # an earlier run's row: left alone
    old.close()
    box = Outbox(db, 10**7)
    rx = 1_000_000
    own = json.dumps({"v": 1, "kind": "gateway", "ts": rx, "seq": 1, "metrics": {}}).encode()
    ahead = json.dumps({"v": 1, "kind": "router", "ts": rx + 2 * DAY_MS + 5 * 3_600_000})
    box.append(
        [
            NewRow(BULK, "gw-1", "telemetry", own, rx),
            NewRow(BULK, "r-1", "telemetry", ahead.encode(), rx),
        ]
    )
    done = box.rebase(2 * DAY_MS, "gw-1", ahead_ms=3_600_000)
    assert (done.rows, done.own, done.flagged) == (2, 1, 1)
    rows = {r.device: r for r in box.next_batch(10, 10**6, live=0)}
    assert rows["dev-2"].rx_ms == 5  # not this run's
    assert rows["gw-1"].rx_ms == rx + 2 * DAY_MS
    assert json.loads(rows["gw-1"].payload)["ts"] == rx + 2 * DAY_MS
    assert rows["r-1"].flags & CLOCK_SUSPECT and not rows["gw-1"].flags
    assert box.stats().clock_suspect_total == 1
    box.close()
