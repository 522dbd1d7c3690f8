"""The influxdb-client path (through the 1.8-style adapter) stores the same points as /write."""

from __future__ import annotations

from contract.codec import encode
from contract.messages import event
from contract.metrics import BpMonitorMetrics
from contract.topics import Channel, topic
from tests.factories import unique_id, wait_for
from tests.ingest.conftest import Publisher, now_ms, rows, worker_settings
from tests.ingest.v2_adapter import V2Adapter


def test_v2_writer_stores_the_same_points_as_v1(mosquitto, influx, start_worker) -> None:
    v2_db = unique_id("v2db").replace("-", "_")
    influx.query(f'CREATE DATABASE "{v2_db}"', method="POST")
    centre = unique_id("c")
    with V2Adapter(influx.url) as adapter:
        start_worker(worker_settings(mosquitto, influx))  # 1.x /write to "gramlink"
        start_worker(
            worker_settings(
                mosquitto,
                influx,
                writer="v2",
                influx_url=adapter.url,
                influx_token=f"{influx.admin_user}:{influx.admin_password}",
                influx_org="gramlink",
                influx_bucket=f"{v2_db}/autogen",
                influx_username=None,
            )
        )
        pub = Publisher(mosquitto)
        ts = now_ms()
        n = pub.envelopes(centre, "gw-1", ["pw-1", "pw-2"], range(200), ts - 10_000, per=50)
        for seq in range(20):
            reading = event(
                "bp_monitor",
                ts=ts + seq,
                seq=seq,
                name="measured",
                metrics=BpMonitorMetrics(systolic_mmhg=110 + seq, patient_ref="cd" * 32),
                detail={"cuff": "adult", "retry": seq % 2 == 0},
            )
            pub.publish(topic(centre, "bp-1", Channel.EVENT), encode(reading))
        pub.publish(topic(centre, "pw-1", Channel.TELEMETRY), b"not json")
        pub.flush()
        pub.close()

        def both(measurement: str) -> tuple[list[dict], list[dict]]:
            q = f"SELECT * FROM \"{measurement}\" WHERE centre='{centre}'"
            one = rows(influx, q)
            two = rows(influx, q.replace("FROM ", f'FROM "{v2_db}"."autogen".'))
            # other tests' points add columns (null here) to the shared database
            one = [{k: v for k, v in r.items() if v is not None} for r in one]
            two = [{k: v for k, v in r.items() if v is not None} for r in two]
            return one, two

        wait_for(lambda: [len(x) for x in both("power")] == [n, n], 30, "power in both")
        wait_for(lambda: [len(x) for x in both("health")] == [20, 20], 30, "health in both")
        for measurement in ("power", "health"):
            one, two = both(measurement)
            assert one == two
        wait_for(lambda: [len(x) for x in both("quarantine")] == [1, 1], 30, "quarantine")
        assert adapter.requests > 0
