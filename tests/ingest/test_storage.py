"""Readings reach InfluxDB once per (device, seq), with the right tags, fields and time."""

from __future__ import annotations

from contract.codec import encode
from contract.messages import event
from contract.metrics import BpMonitorMetrics
from contract.storage import storage_time_ns
from contract.topics import Channel, topic
from tests.factories import unique_id, wait_for
from tests.ingest.conftest import (
    Publisher,
    count,
    distinct_seqs,
    now_ms,
    publish_births,
    rows,
    worker_settings,
)


def test_every_reading_once_with_tags_fields_and_time(mosquitto, influx, start_worker) -> None:
    centre = unique_id("c")
    publish_births(mosquitto, centre, {"pw-1": "victron-mppt", "pw-2": "luminous, 2kva"})
    w = start_worker(worker_settings(mosquitto, influx))
    wait_for(lambda: w.worker.models.get(centre, "pw-2") != "unknown", 10, "births seen")

    ts0 = now_ms() - 60_000
    pub = Publisher(mosquitto)
    direct = pub.readings(centre, ["pw-1"], range(0, 300), ts0)
    model = "luminous, 2kva"  # what the gateway stamps into each record (escaped as a tag)
    enveloped = pub.envelopes(centre, "gw-1", ["pw-2"], range(0, 300), ts0, per=70, model=model)
    # A replay (a gateway resending a batch it never got PUBACK for) must not duplicate.
    pub.envelopes(centre, "gw-1", ["pw-2"], range(0, 70), ts0, per=70, model=model)
    pub.flush()
    pub.close()

    total = direct + enveloped
    wait_for(lambda: count(influx, "power", centre) >= total, 30, "all readings stored")
    assert count(influx, "power", centre) == total
    assert distinct_seqs(influx, "power", centre) == {
        (d, s) for d in ("pw-1", "pw-2") for s in range(300)
    }
    got = rows(
        influx,
        f"SELECT * FROM power WHERE centre='{centre}' AND device='pw-2' AND seq = 42",
    )
    assert len(got) == 1
    row = got[0]
    assert row["time"] == storage_time_ns(ts0 + 42, 42)
    assert row["model"] == "luminous, 2kva"
    (direct,) = rows(
        influx, f"SELECT * FROM power WHERE centre='{centre}' AND device='pw-1' AND seq = 42"
    )
    assert direct["model"] == "unknown"  # a direct reading carries no model
    assert row["pv_power_w"] == 42.0
    assert row["grid_present"] is True


def test_events_carry_name_and_pseudonym_never_a_tag(mosquitto, influx, start_worker) -> None:
    centre = unique_id("c")
    start_worker(worker_settings(mosquitto, influx))
    ref = "ab" * 32
    reading = event(
        "bp_monitor",
        ts=now_ms(),
        seq=7,
        name="measured",
        metrics=BpMonitorMetrics(systolic_mmhg=121, diastolic_mmhg=79, patient_ref=ref),
    )
    pub = Publisher(mosquitto)
    pub.publish(topic(centre, "bp-1", Channel.EVENT), encode(reading))
    pub.flush()
    pub.close()
    wait_for(lambda: count(influx, "health", centre) == 1, 20, "event stored")
    (row,) = rows(influx, f"SELECT * FROM health WHERE centre='{centre}'")
    assert row["event"] == "measured"
    assert row["patient_ref"] == ref
    assert row["systolic_mmhg"] == 121.0
    assert row["model"] == "unknown"
    keys = rows(influx, 'SHOW TAG KEYS FROM "health"')
    assert "patient_ref" not in {k.get("tagKey") for k in keys}
