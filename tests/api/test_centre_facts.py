"""The API writes registry facts into InfluxDB (``centres``, ``solar_expected``) for the
dashboards: at start, after every centre or gateway change, and periodically."""

from __future__ import annotations

import json
import logging
from typing import Any

import httpx
import pytest

from api.centre_facts import CentreFacts, InfluxLines
from api.db.models import Centre
from api.db.session import make_engine, migrate, session_factory
from contract.topics import Channel, topic
from gramlink.services import InfluxService, MosquittoService
from gramlink.services.process import free_port
from tests.api.conftest import Api, ApiFactory
from tests.factories import admin_client, close, unique_id, wait_for

SAMBA = {"latitude": 32.5625, "longitude": 75.1199}


def set_panels(api: Api, centre: str, pv_rated_w: float) -> None:
    """Rated PV power and UTC offset straight in the registry (a commit like any other:
    the API's schemas gain these fields with the alerting work)."""
    sessions = api.client.app.state.components.sessions  # type: ignore[attr-defined]
    with sessions.begin() as session:
        row = session.get(Centre, centre)
        row.pv_rated_w = pv_rated_w
        row.utc_offset_h = 5.5


def influx_rows(influx: InfluxService, query: str) -> list[dict[str, Any]]:
    answer = httpx.get(
        f"{influx.url}/query",
        params={"db": influx.database, "q": query},
        auth=(influx.admin_user, influx.admin_password),
        timeout=10,
    )
    answer.raise_for_status()
    rows = []
    for result in answer.json()["results"]:
        for series in result.get("series", []):
            tags = series.get("tags", {})
            for values in series["values"]:
                rows.append({**tags, **dict(zip(series["columns"], values, strict=True))})
    return rows


def latest(influx: InfluxService, centre: str) -> dict[str, Any] | None:
    rows = influx_rows(
        influx,
        f"SELECT * FROM centres WHERE centre = '{centre}' ORDER BY time DESC LIMIT 1",
    )
    return rows[0] if rows else None


def test_centre_changes_and_gateway_presence_reach_influxdb(
    api_factory: ApiFactory, influx: InfluxService, mosquitto: MosquittoService
) -> None:
    api = api_factory(centre_facts_interval_s=3600)  # only changes write within the test
    headers = api.headers()
    hub = api.centre(
        village="Vijaypur",
        district="Samba",
        state="Jammu & Kashmir",
        **SAMBA,
    )
    wait_for(lambda: latest(influx, hub) is not None, 10, "the hub's centres point")
    set_panels(api, hub, 1600)
    wait_for(lambda: (latest(influx, hub) or {}).get("pv_rated_w") == 1600, 10, "panels")
    point = latest(influx, hub)
    assert point is not None
    assert point["district"] == "Samba" and point["state"] == "Jammu & Kashmir"
    assert point["hub"] == hub  # a hub names itself
    assert point["village"] == "Vijaypur" and point["online"] == 0
    assert point["latitude"] == SAMBA["latitude"] and point["utc_offset_h"] == 5.5

    spoke = api.centre(hub_id=hub, name="Spoke without a place")
    wait_for(lambda: latest(influx, spoke) is not None, 10, "the spoke's point")
    point = latest(influx, spoke)
    assert point is not None
    assert point["hub"] == hub and point["district"] == "unassigned"
    assert point["latitude"] is None

    answer = api.client.patch(f"/v1/centres/{spoke}", json={"district": "Kathua"}, headers=headers)
    assert answer.status_code == 200, answer.text
    wait_for(
        lambda: (latest(influx, spoke) or {}).get("district") == "Kathua", 10, "district change"
    )

    gateway = unique_id("gw")
    body = {"id": gateway, "centre_id": hub, "model": "pi"}
    assert api.client.post("/v1/gateways", json=body, headers=headers).status_code == 201
    publisher = admin_client(mosquitto)
    try:
        payload = json.dumps({"v": 1, "online": True}).encode()
        publisher.publish(topic(hub, gateway, Channel.STATE), payload, qos=1).wait_for_publish(5)
        wait_for(lambda: (latest(influx, hub) or {}).get("online") == 1, 15, "hub online")
    finally:
        close(publisher)


def test_clear_sky_hours_follow_the_sun_at_the_centre(
    api_factory: ApiFactory, influx: InfluxService
) -> None:
    api = api_factory(centre_facts_interval_s=3600)
    centre = api.centre(**SAMBA)
    set_panels(api, centre, 2000)
    query = f"SELECT pv_expected_w FROM solar_expected WHERE centre = '{centre}'"
    wait_for(lambda: len(influx_rows(influx, query)) >= 24 * 8, 10, "a week of clear-sky hours")
    hours = influx_rows(influx, query)
    by_local_hour: dict[int, list[float]] = {}
    for row in hours:
        utc_hour = int(row["time"][11:13])
        by_local_hour.setdefault(int((utc_hour + 5.5) % 24), []).append(row["pv_expected_w"])
    assert max(by_local_hour[0]) == 0  # midnight
    noon = max(by_local_hour[12])
    assert 1000 < noon < 2000  # a 2 kW array near 32.6° N: well below rated, well above zero
    assert max(by_local_hour[8]) < noon


def test_points_are_written_again_periodically_without_changes(
    api_factory: ApiFactory, influx: InfluxService
) -> None:
    api = api_factory(centre_facts_interval_s=0.5)
    centre = api.centre(district="Samba", state="Jammu and Kashmir")
    query = f"SELECT count(online) FROM centres WHERE centre = '{centre}'"

    def points() -> int:
        rows = influx_rows(influx, query)
        return int(rows[0]["count"]) if rows else 0

    wait_for(lambda: points() >= 3, 15, "three rounds of the writer")


def test_influxdb_down_is_logged_once_and_nothing_raises(
    caplog: pytest.LogCaptureFixture,
) -> None:
    influx = InfluxLines(f"http://127.0.0.1:{free_port()}", "gramlink", "u", "p", 2)
    engine = make_engine("sqlite://")
    migrate(engine)
    sessions = session_factory(engine)
    with sessions.begin() as session:
        session.add(Centre(id="c1", name="C1"))
    facts = CentreFacts(sessions, influx, 3600)
    with caplog.at_level(logging.WARNING, logger="api.centre_facts"):
        assert facts.write_once() == 0
        assert facts.write_once() == 0
    failed = [r for r in caplog.records if "centre_facts_write_failed" in r.getMessage()]
    assert len(failed) == 1
    influx.close()
    engine.dispose()
