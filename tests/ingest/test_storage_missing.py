"""A missing database: exit 6 with one line at start; retried without loss while running.

Before, a write into a missing database made ingest exit 1, and systemd
restarted it every 5 s for ever.
"""

from __future__ import annotations

import logging

import pytest

from runtime.exits import ExitCode
from tests.factories import unique_id, wait_for
from tests.ingest.conftest import Publisher, now_ms, run_ingest, worker_settings
from tests.ingest.test_influx_init import init


def stored(influx, db: str, centre: str) -> int:
    body = influx.query(f"SELECT count(seq) FROM power WHERE centre='{centre}'", database=db)
    series = body["results"][0].get("series")
    return int(series[0]["values"][0][1]) if series else 0


def test_missing_database_at_start_exits_6_naming_influx_init(mosquitto, influx) -> None:
    db = unique_id("nodb").replace("-", "_")
    done = run_ingest(worker_settings(mosquitto, influx, influx_database=db))
    assert done.returncode == ExitCode.STORAGE_MISSING == 6
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "level=ERROR" in lines[0] and "event=storage_missing" in lines[0]
    assert db in lines[0] and "gramlink influx init" in lines[0]


@pytest.mark.slow
def test_database_dropped_under_a_running_worker_loses_nothing(
    mosquitto, influx, start_worker, caplog: pytest.LogCaptureFixture
) -> None:
    db = unique_id("db").replace("-", "_")
    assert init(influx, db).returncode == 0
    centre = unique_id("c")
    w = start_worker(worker_settings(mosquitto, influx, influx_database=db, retry_max_s=0.5))
    pub = Publisher(mosquitto)
    ts0 = now_ms() - 60_000
    before = pub.readings(centre, ["pw-1"], range(100), ts0)
    pub.flush()
    wait_for(lambda: stored(influx, db, centre) == before, 30, "first readings stored")

    caplog.set_level(logging.WARNING, logger="ingest")
    influx.query(f'DROP DATABASE "{db}"', method="POST")
    after = pub.readings(centre, ["pw-2", "pw-3"], range(500), ts0)
    pub.flush()
    retries = w.worker.metrics.retries._value.get
    wait_for(lambda: retries() >= 5, 30, "writes retried")
    assert w.worker.fatal is None and w.thread.is_alive()
    assert w.worker.metrics.unacked._value.get() > 0  # held, not acknowledged
    missing = [r for r in caplog.records if "event=influx_storage_missing" in r.getMessage()]
    assert len(missing) == 1  # one line a minute, not one per retry
    assert missing[0].levelno == logging.ERROR
    assert "gramlink influx init" in missing[0].getMessage()

    assert init(influx, db).returncode == 0  # the operator recreates it
    wait_for(lambda: stored(influx, db, centre) == after, 60, "every reading stored")
    # stored before acknowledged: the writer acknowledges once InfluxDB has answered
    wait_for(lambda: w.worker.metrics.unacked._value.get() == 0, 10, "everything acknowledged")
    assert any("event=influx_write_resumed" in r.getMessage() for r in caplog.records)
    pub.close()
    assert w.stop() == 0
