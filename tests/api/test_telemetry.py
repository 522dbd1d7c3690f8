"""Telemetry reads answer what ingest wrote (same layout: contract.storage); identifiers
that try to escape the query are refused with 422."""

from __future__ import annotations

import httpx
import pytest

from contract.metrics import measurement_for
from contract.storage import storage_time_ns
from gramlink.services import InfluxService
from tests.api.conftest import Api
from tests.factories import unique_id

T0 = 1_717_200_000_000  # 2024-06-01T00:00:00Z in ms


def write(
    influx: InfluxService,
    kind: str,
    centre: str,
    device: str,
    readings: list[tuple[int, int, dict[str, float]]],
) -> None:
    lines = []
    for ts_ms, seq, metrics in readings:
        fields = ",".join([f"{k}={v}" for k, v in metrics.items()] + [f"seq={seq}i"])
        lines.append(
            f"{measurement_for(kind).value},centre={centre},device={device},model=m1 "
            f"{fields} {storage_time_ns(ts_ms, seq)}"
        )
    response = httpx.post(
        f"{influx.url}/write",
        params={
            "db": influx.database,
            "u": influx.admin_user,
            "p": influx.admin_password,
            "precision": "ns",
        },
        content="\n".join(lines).encode(),
    )
    assert response.status_code == 204, response.text


@pytest.fixture
def oximeter(api: Api, influx: InfluxService) -> tuple[str, str]:
    centre = api.centre()
    device, neighbour = unique_id("ox"), unique_id("ox")
    for name in (device, neighbour):
        body = {"id": name, "centre_id": centre, "kind": "pulse_oximeter", "model": "m1"}
        assert api.client.post("/v1/devices", json=body, headers=api.headers()).status_code == 201
    write(
        influx,
        "pulse_oximeter",
        centre,
        device,
        [
            (T0, 1, {"spo2_pct": 97.0, "pulse_bpm": 70.0}),
            (T0, 2, {"spo2_pct": 95.0, "pulse_bpm": 72.0}),  # same millisecond, next seq
            (T0 + 3_600_000, 3, {"spo2_pct": 91.0, "pulse_bpm": 90.0}),
        ],
    )
    write(influx, "pulse_oximeter", centre, neighbour, [(T0 + 7_200_000, 1, {"spo2_pct": 80.0})])
    return centre, device


def test_latest_is_the_newest_reading_of_that_device(api: Api, oximeter: tuple[str, str]) -> None:
    _, device = oximeter
    answer = api.client.get(f"/v1/devices/{device}/telemetry/latest", headers=api.headers())
    assert answer.status_code == 200, answer.text
    (reading,) = answer.json()["readings"]
    assert reading["values"]["spo2_pct"] == 91.0
    assert reading["values"]["seq"] == 3
    assert reading["time_ns"] == storage_time_ns(T0 + 3_600_000, 3)


def test_a_range_returns_every_reading_and_windows_aggregate(
    api: Api, oximeter: tuple[str, str]
) -> None:
    _, device = oximeter
    window = {"start": "2024-06-01T00:00:00Z", "end": "2024-06-01T02:00:00Z"}
    raw = api.client.get(f"/v1/devices/{device}/telemetry", params=window, headers=api.headers())
    assert raw.status_code == 200, raw.text
    assert [r["values"]["seq"] for r in raw.json()["readings"]] == [1, 2, 3]
    hourly = api.client.get(
        f"/v1/devices/{device}/telemetry",
        params={**window, "window": "1h", "field": ["spo2_pct"]},
        headers=api.headers(),
    )
    assert hourly.status_code == 200, hourly.text
    assert [r["values"]["spo2_pct"] for r in hourly.json()["readings"]] == [96.0, 91.0]


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/v1/devices/x'%20OR%20'1'='1/telemetry/latest", {}),
        ('/v1/devices/x"%3BDROP%20DATABASE%20gramlink/telemetry/latest', {}),
        ("/v1/devices/.*/telemetry/latest", {}),
        ("/v1/devices/{device}/telemetry", {"window": "1h) fill(0); DROP DATABASE gramlink --"}),
        ("/v1/devices/{device}/telemetry", {"field": 'spo2_pct" FROM health --'}),
        ("/v1/devices/{device}/telemetry", {"field": "patient_id"}),
        ("/v1/devices/{device}/telemetry", {"field": "not_a_metric"}),
        ("/v1/devices/{device}/telemetry", {"fn": "mean(*) --"}),
        ("/v1/devices/{device}/telemetry", {"start": "now() - 1d"}),
    ],
)
def test_injection_attempts_are_refused_with_422(
    api: Api,
    oximeter: tuple[str, str],
    influx: InfluxService,
    path: str,
    params: dict[str, str],
) -> None:
    _, device = oximeter
    query = {"start": "2024-06-01T00:00:00Z", "end": "2024-06-01T02:00:00Z", **params}
    if "field" in params and "window" not in params:
        query["window"] = "1h"
    answer = api.client.get(path.format(device=device), params=query, headers=api.headers())
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert influx.database in str(influx.query("SHOW DATABASES"))


def test_a_clock_suspect_reading_is_read_with_the_devices_own_time(
    api: Api, influx: InfluxService
) -> None:
    """A reading the gateway flagged (device clock at 1970) is stored at its receive
    time; a raw read returns the device's own time and the flag beside the metrics."""
    centre, device = api.centre(), unique_id("ox")
    body = {"id": device, "centre_id": centre, "kind": "pulse_oximeter", "model": "m1"}
    assert api.client.post("/v1/devices", json=body, headers=api.headers()).status_code == 201
    line = (  # as ingest writes a clock-suspect record (docs/ingest.md)
        f"health,centre={centre},device={device},model=m1 "
        f"spo2_pct=97.0,seq=4i,device_ts=0i,clock_suspect=true {storage_time_ns(T0, 4)}"
    )
    response = httpx.post(
        f"{influx.url}/write",
        params={"db": influx.database, "u": influx.admin_user, "p": influx.admin_password},
        content=line.encode(),
    )
    assert response.status_code == 204, response.text
    window = {"start": "2024-06-01T00:00:00Z", "end": "2024-06-01T01:00:00Z"}
    raw = api.client.get(f"/v1/devices/{device}/telemetry", params=window, headers=api.headers())
    assert raw.status_code == 200, raw.text
    (reading,) = raw.json()["readings"]
    assert reading["time_ns"] == storage_time_ns(T0, 4)
    assert reading["values"]["device_ts"] == 0
    assert reading["values"]["clock_suspect"] is True
    assert reading["values"]["spo2_pct"] == 97.0
