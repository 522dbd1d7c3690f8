"""``gramlink influx init`` (1.x): retention policies and hourly roll-ups, idempotently."""

from __future__ import annotations

import subprocess
import sys
import time

import httpx

from tests.factories import unique_id, wait_for
from tests.ingest.conftest import REPO, rows


def init(influx, db: str) -> subprocess.CompletedProcess[str]:
    env = {
        "GRAMLINK_INGEST_INFLUX_URL": influx.url,
        "GRAMLINK_INGEST_INFLUX_DATABASE": db,
        "GRAMLINK_INGEST_INFLUX_USERNAME": influx.admin_user,
        "GRAMLINK_INGEST_INFLUX_PASSWORD": influx.admin_password,
        "PATH": "/usr/bin:/bin",
    }
    return subprocess.run(
        [sys.executable, "-m", "gramlink", "influx", "init"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_influx_init_creates_policies_and_rollups_idempotently(influx) -> None:
    db = unique_id("db").replace("-", "_")
    first = init(influx, db)
    assert first.returncode == 0, first.stderr
    assert f"created database {db}, default retention policy raw" in first.stdout
    assert "created continuous query cq_power_1h" in first.stdout

    again = init(influx, db)
    assert again.returncode == 0, again.stderr
    assert "nothing to change" in again.stdout

    policies = {r["name"]: r for r in rows(influx, f'SHOW RETENTION POLICIES ON "{db}"')}
    assert policies["raw"]["duration"] == "2160h0m0s" and policies["raw"]["default"] is True
    assert policies["rollup_5y"]["duration"] == "43800h0m0s"
    # never an autogen default: a write racing the set-up would land where nobody looks
    assert set(policies) == {"raw", "rollup_5y"}


def test_influx_init_rollup_runs_on_real_points(influx) -> None:
    db = unique_id("db").replace("-", "_")
    assert init(influx, db).returncode == 0
    hour_ns = 3600 * 10**9
    base = (time.time_ns() // hour_ns - 2) * hour_ns
    lines = "\n".join(
        f"power,centre=c1,device=d1,model=m pv_power_w={v}.0,grid_present=true,"
        f'patient_ref="x",seq={v}i {base + v * 60_000_000_000}'
        for v in range(10)
    )
    response = httpx.post(
        f"{influx.url}/write",
        params={"db": db, "precision": "ns", "u": influx.admin_user, "p": influx.admin_password},
        content=lines,
    )
    assert response.status_code == 204, response.text
    # Run the continuous query's own SELECT over the hour (InfluxDB runs it hourly).
    (cq,) = [
        r["query"]
        for r in rows(influx, "SHOW CONTINUOUS QUERIES")
        if r["name"] == "cq_power_1h" and db in r["query"]
    ]
    select = cq[cq.index("SELECT") : cq.rindex(" END")]
    head, _, group = select.partition(" GROUP BY ")
    where = f" WHERE time >= {base} AND time < {base + hour_ns}"
    influx.query(head + where + " GROUP BY " + group, database=db, method="POST")
    wait_for(lambda: bool(rows(influx, f'SELECT * FROM "{db}"."rollup_5y"."power"')), 10, "roll-up")
    (row,) = rows(influx, f'SELECT * FROM "{db}"."rollup_5y"."power"')
    assert row["mean_pv_power_w"] == 4.5 and row["max_seq"] == 9
