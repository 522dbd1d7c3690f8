"""Bad input at ingest, through the real broker and InfluxDB: quarantined with its reason.

A reading of another kind than its device's birth, a ``v`` that is not the
integer 1, and a message whose conversion raises (a bug in our own converter,
injected for one device id) all end in quarantine; the worker goes on.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from contract.codec import encode, encode_batch_parts
from contract.messages import telemetry
from contract.metrics import RouterMetrics
from contract.topics import Channel, topic
from ingest.points import PointBuilder
from tests.factories import unique_id, wait_for
from tests.ingest.conftest import (
    Publisher,
    ThreadWorker,
    count,
    now_ms,
    power_reading,
    publish_births,
    rows,
    worker_settings,
)
from tests.ingest.test_quarantine import quarantined


def router_reading(seq: int, ts: int) -> bytes:
    return encode(telemetry("router", ts=ts, seq=seq, metrics=RouterMetrics(uptime_s=seq)))


def test_a_reading_of_another_kind_than_its_devices_birth_is_quarantined(
    mosquitto, influx, start_worker
) -> None:
    centre = unique_id("c")
    publish_births(mosquitto, centre, {"pw-1": "victron", "pw-2": "luminous"})
    w = start_worker(worker_settings(mosquitto, influx))
    wait_for(lambda: w.worker.models.profile(centre, "pw-2")[1] == "power", 10, "births seen")
    now = now_ms()
    pub = Publisher(mosquitto)
    pub.publish(topic(centre, "pw-1", Channel.TELEMETRY), router_reading(1, now))
    pub.publish(topic(centre, "pw-1", Channel.TELEMETRY), power_reading(2, now))
    pub.publish(
        topic(centre, "gw-1", Channel.GATEWAY_BATCH),
        encode_batch_parts(
            "gw-1",
            1,
            [
                ("telemetry", "pw-2", router_reading(3, now), now),
                ("telemetry", "pw-2", power_reading(4, now), now),
                ("telemetry", "rt-9", router_reading(5, now), now),  # no birth: not checked
            ],
        ),
    )
    pub.flush()
    pub.close()

    wait_for(lambda: quarantined(influx, centre) == {"kind_mismatch": 2}, 30, "quarantine")
    wait_for(lambda: count(influx, "power", centre) == 2, 10, "the power readings")
    assert count(influx, "router", centre) == 1  # only rt-9's
    got = rows(influx, f"SELECT device, detail FROM quarantine WHERE centre='{centre}'")
    assert sorted(str(r["device"]) for r in got) == ["pw-1", "pw-2"]
    assert all("registered as power" in str(r["detail"]) for r in got)


def test_a_v_that_is_not_the_integer_1_and_raw_patient_ids_never_reach_storage(
    mosquitto, influx, start_worker, caplog
) -> None:
    caplog.set_level(logging.WARNING, logger="ingest.points")
    centre = unique_id("c")
    start_worker(worker_settings(mosquitto, influx))
    now = now_ms()
    reading = {"kind": "power", "ts": now, "seq": 1, "metrics": {"pv_power_w": 1.5}}
    health = {
        "v": 1,
        "kind": "bp_monitor",
        "ts": now,
        "seq": 2,
        "name": "measurement",
        "metrics": {"systolic_mmhg": 999, "patient_id": 98765432},
    }
    pub = Publisher(mosquitto)
    t = topic(centre, "pw-1", Channel.TELEMETRY)
    for v in ({"v": 1.0}, {}, {"v": True}, {"v": "1"}):
        pub.publish(t, json.dumps({**v, **reading}).encode())
    pub.publish(topic(centre, "bp-1", Channel.EVENT), json.dumps(health).encode())
    pub.publish(t, power_reading(9, now))
    pub.flush()
    pub.close()

    expected = {"wrong_version": 4, "out_of_range": 1}
    wait_for(lambda: quarantined(influx, centre) == expected, 30, "quarantine")
    wait_for(lambda: count(influx, "power", centre) == 1, 10, "the good reading")
    (excerpt,) = rows(
        influx, f"SELECT excerpt FROM quarantine WHERE centre='{centre}' AND device='bp-1'"
    )
    assert "98765432" not in str(excerpt["excerpt"])
    assert "<redacted>" in str(excerpt["excerpt"])
    lines = [r.getMessage() for r in caplog.records if centre in r.getMessage()]
    assert len([line for line in lines if "reason=wrong_version" in line]) == 1  # not 4
    assert not any("98765432" in line for line in lines)


class PoisonedBuilder(PointBuilder):
    """Our own converter with a bug that only one device's readings trigger."""

    def _reading(self, centre: str, device: str, *rest: Any) -> None:
        if device == "poison":
            raise KeyError("boom")
        super()._reading(centre, device, *rest)


def test_a_message_that_crashes_the_converter_is_quarantined_acked_and_the_worker_goes_on(
    mosquitto, influx
) -> None:
    centre = unique_id("c")
    settings = worker_settings(mosquitto, influx)
    first = ThreadWorker(settings)
    worker = first.worker
    worker.builder = PoisonedBuilder(
        worker.models,
        worker.quarantine,
        max_age_s=settings.max_age_s,
        max_future_s=settings.max_future_s,
        on_quarantine=lambda reason: worker.metrics.quarantined.labels(reason).inc(),
    )
    now = now_ms()

    def power_of(device: str) -> int:
        got = rows(
            influx, f"SELECT count(seq) FROM power WHERE centre='{centre}' AND device='{device}'"
        )
        return int(got[0]["count"]) if got else 0  # type: ignore[call-overload]

    pub = Publisher(mosquitto)
    pub.publish(topic(centre, "poison", Channel.TELEMETRY), power_reading(1, now))
    pub.publish(
        topic(centre, "gw-1", Channel.GATEWAY_BATCH),
        encode_batch_parts(
            "gw-1",
            1,
            [
                ("telemetry", "pw-1", power_reading(2, now), now),
                ("telemetry", "poison", power_reading(3, now), now),
                ("telemetry", "pw-1", power_reading(4, now), now),
            ],
        ),
    )
    pub.publish(topic(centre, "pw-1", Channel.TELEMETRY), power_reading(5, now))
    pub.flush()

    wait_for(lambda: count(influx, "power", centre) == 3, 30, "the readings around the poison")
    wait_for(lambda: quarantined(influx, centre) == {"internal_error": 2}, 10, "quarantine")
    details = rows(influx, f"SELECT detail, device FROM quarantine WHERE centre='{centre}'")
    assert {(str(r["device"]), str(r["detail"])) for r in details} == {
        ("poison", "KeyError: 'boom'")
    }
    assert worker.metrics.quarantined.labels("internal_error")._value.get() == 2
    wait_for(lambda: worker.metrics.unacked._value.get() == 0, 10, "everything acknowledged")
    assert first.thread.is_alive() and worker.fatal is None

    # Acknowledged for good: the same session, restarted, is not handed the poison again.
    assert first.stop() == 0
    second = ThreadWorker(settings)
    pub.publish(topic(centre, "pw-1", Channel.TELEMETRY), power_reading(6, now))
    pub.flush()
    pub.close()
    wait_for(lambda: power_of("pw-1") == 4, 30, "the marker after the restart")
    assert power_of("poison") == 0  # a valid reading: stored, had the broker sent it again
    assert quarantined(influx, centre) == {"internal_error": 2}
    assert second.stop() == 0
