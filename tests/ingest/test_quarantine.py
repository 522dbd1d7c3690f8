"""Bad input ends in quarantine with a reason; valid readings around it are written."""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterator

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contract.codec import encode, encode_batch_parts
from contract.messages import telemetry
from contract.metrics import GatewayMetrics, RouterMetrics
from contract.topics import Channel, topic
from tests.factories import unique_id, wait_for
from tests.ingest.conftest import (
    Publisher,
    ThreadWorker,
    count,
    now_ms,
    power_reading,
    rows,
    worker_settings,
)
from tests.ingest.test_influx_init import init

MEASUREMENTS = ("power", "router", "health", "gateway")


def stored(influx, centre: str) -> int:
    return sum(count(influx, m, centre) for m in MEASUREMENTS)


def quarantined(influx, centre: str) -> dict[str, int]:
    got = rows(
        influx,
        f"SELECT count(detail) FROM quarantine WHERE centre='{centre}' GROUP BY reason",
    )
    return {str(r["reason"]): int(r["count"]) for r in got}  # type: ignore[call-overload]


def test_bad_payloads_quarantined_with_reasons(mosquitto, influx, start_worker) -> None:
    centre = unique_id("c")
    start_worker(worker_settings(mosquitto, influx))
    now = now_ms()

    def t(device: str) -> str:
        return topic(centre, device, Channel.TELEMETRY)

    bad = {
        "bad_json": (t("d1"), b"{not json"),
        "out_of_range": (
            t("d2"),
            json.dumps(
                {"v": 1, "kind": "power", "ts": now, "seq": 1, "metrics": {"battery_soc_pct": 140}}
            ).encode(),
        ),
        "unknown_kind": (t("d3"), b'{"v":1,"kind":"toaster","ts":1,"seq":1,"metrics":{}}'),
        "wrong_version": (t("d4"), b'{"v":9,"kind":"power","ts":1,"seq":1}'),
        "patient_id_at_central": (
            topic(centre, "bp-1", Channel.EVENT),
            json.dumps(
                {
                    "v": 1,
                    "kind": "bp_monitor",
                    "ts": now,
                    "seq": 3,
                    "name": "measured",
                    "metrics": {"systolic_mmhg": 120, "patient_id": "ravi-kumar-42"},
                }
            ).encode(),
        ),
        "ts_implausible_past": (t("d5"), power_reading(1, 1_000)),
        "ts_implausible_future": (t("d6"), power_reading(1, now + 10 * 86_400_000)),
        "bad_compression": (topic(centre, "gw-1", Channel.GATEWAY_BATCH), b"\x00not zlib"),
    }
    # infinity (InfluxDB cannot store it, a rule would take it as a value): refused on entry
    infinite = (
        encode(telemetry("gateway", ts=now, seq=1, metrics=GatewayMetrics(disk_free_mb=1e308)))
        .replace(b"1e+308", b"Infinity")
        .replace(b"1e308", b"Infinity")
    )
    envelope = encode_batch_parts(
        "gw-3",
        1,
        [
            ("telemetry", "env-ok", power_reading(5, now), now),
            ("telemetry", "env-bad", b'{"v":1,"kind":"power","ts":1,"seq":-1,"metrics":{}}', now),
            ("telemetry", "env-ok", power_reading(6, now), now),
        ],
    )
    pub = Publisher(mosquitto)
    for seq in range(3):
        pub.publish(t("ok"), power_reading(seq, now))
    for tp, payload in bad.values():
        pub.publish(tp, payload)
    pub.publish(t("gw-2"), infinite)
    pub.publish(topic(centre, "gw-3", Channel.GATEWAY_BATCH), envelope)
    for seq in range(3, 6):
        pub.publish(t("ok"), power_reading(seq, now))
    pub.flush()
    pub.close()

    expected = dict.fromkeys(bad, 1)
    expected["out_of_range"] += 2  # seq -1 inside the envelope, the infinity
    wait_for(lambda: quarantined(influx, centre) == expected, 30, "quarantine")
    wait_for(lambda: stored(influx, centre) == 8, 10, "valid readings")
    (leak,) = rows(
        influx,
        f"SELECT excerpt FROM quarantine WHERE centre='{centre}' "
        "AND reason='patient_id_at_central'",
    )
    assert "ravi-kumar-42" not in str(leak["excerpt"])
    assert "<redacted>" in str(leak["excerpt"])


def test_a_line_influxdb_refuses_is_quarantined_and_the_rest_of_its_batch_stored(
    mosquitto, influx, start_worker
) -> None:
    """An older schema wrote ``pv_power_w`` as text into this shard: InfluxDB refuses the
    float now (field type conflict). Those lines are quarantined, the others stored."""
    db = unique_id("conflict").replace("-", "_")
    assert init(influx, db).returncode == 0
    now = now_ms()
    auth = {"u": influx.admin_user, "p": influx.admin_password}
    older = httpx.post(
        f"{influx.url}/write",
        params={"db": db, "precision": "ms", **auth},
        content=f'power,centre=old,device=old pv_power_w="text" {now}',
    )
    assert older.status_code == 204, older.text
    centre = unique_id("c")
    start_worker(worker_settings(mosquitto, influx, influx_database=db))
    pub = Publisher(mosquitto)
    router = [
        encode(telemetry("router", ts=now, seq=seq, metrics=RouterMetrics(cpu_pct=5.0)))
        for seq in range(3)
    ]
    for seq, payload in enumerate(router):
        pub.publish(topic(centre, "rt-1", Channel.TELEMETRY), payload)
        if seq < 2:
            pub.publish(topic(centre, "pw-1", Channel.TELEMETRY), power_reading(seq, now))
    pub.flush()
    pub.close()

    refused = f"SELECT count(detail) FROM quarantine WHERE centre='{centre}' GROUP BY reason"
    wait_for(lambda: rows(influx, refused, database=db) != [], 30, "quarantined")
    stored = f"SELECT count(cpu_pct) FROM router WHERE centre='{centre}'"
    wait_for(
        lambda: [r["count"] for r in rows(influx, stored, database=db)] == [3],
        30,
        "the router readings",
    )
    reasons = rows(influx, refused, database=db)
    assert [(r["reason"], r["count"]) for r in reasons] == [("influx_rejected", 2)]
    details = f"SELECT detail FROM quarantine WHERE centre='{centre}'"
    detail = rows(influx, details, database=db)[0]["detail"]
    assert "conflict" in str(detail)


METRIC = st.sampled_from(
    [
        *("pv_power_w", "battery_soc_pct", "grid_present", "uptime_s", "systolic_mmhg"),
        *("patient_id", "patient_ref", "disk_free_mb", "bogus"),
    ]
)
VALUE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**20), 10**20),
    st.floats(allow_nan=True),
    st.text(max_size=12),
)


def readings(now: int) -> st.SearchStrategy[bytes]:
    reading = st.fixed_dictionaries(
        {
            "v": st.sampled_from([1, 1, 1, 2]),
            "kind": st.sampled_from(["power", "router", "bp_monitor", "gateway", "toaster"]),
            "ts": st.one_of(st.just(now), st.integers(-5, 2**64)),
            "seq": st.integers(-1, 2**60),
            "metrics": st.dictionaries(METRIC, VALUE, max_size=4),
        }
    )
    return st.one_of(
        st.binary(max_size=64),
        reading.map(lambda d: json.dumps(d).encode()),
        reading.map(lambda d: zlib.compress(json.dumps(d).encode())),
    )


NOW = now_ms()


@pytest.fixture(scope="module")
def module_worker(mosquitto, influx) -> Iterator[ThreadWorker]:
    worker = ThreadWorker(worker_settings(mosquitto, influx))
    yield worker
    worker.stop()


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(payloads=st.lists(readings(NOW), min_size=1, max_size=8))
def test_generated_payloads_stored_or_quarantined(
    mosquitto, influx, module_worker, payloads: list[bytes]
) -> None:
    centre = unique_id("c")
    pub = Publisher(mosquitto)
    for i, payload in enumerate(payloads):
        channel = Channel.GATEWAY_BATCH if i % 3 == 2 else Channel.TELEMETRY
        pub.publish(topic(centre, f"d{i}", channel), payload)
    pub.publish(topic(centre, "sentinel", Channel.TELEMETRY), power_reading(1, NOW))
    pub.flush()
    pub.close()

    def settled() -> bool:
        return (
            stored(influx, centre) + sum(quarantined(influx, centre).values()) >= len(payloads) + 1
        )

    wait_for(settled, 30, "every message stored or quarantined")
    assert stored(influx, centre) + sum(quarantined(influx, centre).values()) == len(payloads) + 1
