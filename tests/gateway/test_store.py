"""The outbox state machine and bounds, the settings gate (no brokers needed)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.outbox import BULK, HIGH, NewRow, Outbox


def _row(prio: int, n: int, size: int = 100) -> NewRow:
    return NewRow(prio, f"dev-{n % 3}", "telemetry", b"x" * size, n)


def test_inflight_rows_return_to_ready_after_a_crash(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "q.sqlite3", 10**6)
    box.append([_row(BULK, n) for n in range(10)])
    sent = box.next_batch(4, 10**6, live=0)
    assert [r.rx_ms for r in sent] == [0, 1, 2, 3]
    box.ack(sent[:2])
    box.close()  # rows 2 and 3 were in flight when the process died

    again = Outbox(tmp_path / "q.sqlite3", 10**6)
    assert again.stats().depth == 8
    assert [r.rx_ms for r in again.next_batch(100, 10**6, live=0)] == list(range(2, 10))
    again.close()


BATCHED = frozenset({"telemetry"})


def test_rows_leave_only_on_their_receipt_and_unreceipted_ones_go_again(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "q.sqlite3", 10**6)
    box.append([_row(BULK, n) for n in range(10)])
    first = box.next_batch(4, 10**6, live=0, batch=101, batched=BATCHED)
    second = box.next_batch(4, 10**6, live=0, batch=102, batched=BATCHED)
    assert box.sent(101) == 4 and box.sent(102) == 4  # PUBACKs: sent, not deleted
    stats = box.stats()
    assert (stats.depth, stats.ready, stats.unreceipted) == (10, 2, 8)
    assert stats.unreceipted_oldest_s is not None

    assert box.receipted([(101, 101)]) == 4  # storage has batch 101
    assert box.receipted([(101, 101)]) == 0  # a duplicate receipt deletes nothing more
    assert box.stats().depth == 6

    back = box.resend_sent()  # a reconnect: batch 102 goes again
    assert (back.batches, back.rows) == (1, 4)
    assert box.stats().ready == 6 and box.stats().unreceipted == 0
    # Its late receipt still deletes its rows (they keep their batch until sent again).
    assert box.receipted([(100, 102)]) == 4
    assert sorted(r.rx_ms for r in box.next_batch(10, 10**6, 0)) == [8, 9]
    assert [r.rx_ms for r in first] == [0, 1, 2, 3] and len(second) == 4
    box.close()


def test_a_receipt_before_the_puback_and_the_timeout(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "q.sqlite3", 10**6)
    box.append([_row(BULK, n) for n in range(6)])
    box.next_batch(3, 10**6, live=0, batch=7, batched=BATCHED)
    assert box.receipted([(7, 7)]) == 3  # the receipt overtook the PUBACK
    assert box.sent(7) == 0  # the PUBACK then finds nothing left to mark
    stats = box.stats()
    assert (stats.depth, stats.ready, stats.unreceipted) == (3, 3, 0)

    box.next_batch(3, 10**6, live=0, batch=8, batched=BATCHED)
    box.sent(8)
    assert box.expire(timeout_s=3600).rows == 0  # not yet
    assert box.expire(timeout_s=0).rows == 3  # timed out: back to ready
    assert box.stats().ready == 3
    box.close()


def test_unreceipted_rows_return_to_ready_at_start_up_and_batches_keep_growing(
    tmp_path: Path,
) -> None:
    box = Outbox(tmp_path / "q.sqlite3", 10**6)
    box.append([_row(BULK, n) for n in range(4)])
    seq = box.next_seq()
    assert seq > 1_700_000_000_000  # a new store starts at the clock's milliseconds
    box.next_batch(4, 10**6, live=0, batch=seq, batched=BATCHED)
    box.sent(seq)
    box.close()  # sent, never receipted, when the process died

    again = Outbox(tmp_path / "q.sqlite3", 10**6)
    assert again.stats().ready == 4
    assert again.next_seq() == seq + 1
    assert again.receipted([(seq, seq)]) == 4  # a receipt still queued for us
    again.close()


def test_sent_rows_are_evicted_like_ready_ones_and_counted(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "q.sqlite3", 20 * 150)
    box.append([_row(BULK, n) for n in range(10)])
    box.next_batch(10, 10**6, live=0, batch=5, batched=BATCHED)
    box.sent(5)
    result = box.append([_row(BULK, n) for n in range(10, 25)])
    assert result.evicted > 0
    stats = box.stats()
    assert stats.bytes <= 20 * 150
    assert stats.unreceipted == 10 - result.evicted
    assert stats.ready + stats.unreceipted == stats.depth
    box.close()


def test_backlog_batches_carry_the_newest_rows_too(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "q.sqlite3", 10**7)
    box.append([_row(BULK, n) for n in range(1000)])
    rows = box.next_batch(100, 10**6, live=25)
    picked = sorted(r.rx_ms for r in rows)
    assert picked == list(range(75)) + list(range(975, 1000))
    box.close()


def test_full_budget_evicts_bulk_oldest_first_and_keeps_high(tmp_path: Path) -> None:
    one = _row(BULK, 0).size
    box = Outbox(tmp_path / "q.sqlite3", budget_bytes=20 * one)
    box.append([_row(HIGH, n) for n in range(5)])
    for n in range(5, 40):
        box.append([_row(BULK, n)])
    kept = box.next_batch(1000, 10**7, live=0)
    assert [r.rx_ms for r in kept] == list(range(5)) + list(range(25, 40))
    assert box.dropped_total == 20
    box.close()
    assert Outbox(tmp_path / "q.sqlite3", 20 * one).dropped_total == 20  # persisted


def test_bulk_is_refused_before_any_high_row_is_evicted(tmp_path: Path) -> None:
    one = _row(HIGH, 0).size
    box = Outbox(tmp_path / "q.sqlite3", budget_bytes=3 * one)
    box.append([_row(HIGH, n) for n in range(3)])
    result = box.append([_row(BULK, 3)])
    assert (result.stored, result.refused, result.evicted) == (0, 1, 0)
    result = box.append([_row(HIGH, 4)])
    assert (result.stored, result.evicted) == (1, 1)
    assert [r.rx_ms for r in box.next_batch(10, 10**6, live=0)] == [1, 2, 4]
    box.close()


@pytest.mark.parametrize(
    ("key", "needle"),
    [(None, "GRAMLINK_GATEWAY_PSEUDONYM_KEY"), ("short", "GRAMLINK_GATEWAY_PSEUDONYM_KEY")],
)
def test_refuses_to_start_without_a_pseudonym_key(
    tmp_path: Path, key: str | None, needle: str
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRAMLINK_")}
    if key is not None:
        env["GRAMLINK_GATEWAY_PSEUDONYM_KEY"] = key
    argv = [sys.executable, "-m", "gramlink", "gateway", "--centre", "c1"]
    argv += ["--uplink-url", "mqtt://127.0.0.1:1", "--data-dir", str(tmp_path)]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2  # CONFIG: permanent, systemd leaves it stopped
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0]
    assert not list(tmp_path.iterdir())  # nothing was created
