"""The engine inside the API process: started by the lifespan with the API's settings,
its figures on the API's /metrics, stopped with the API."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from api.settings import ApiSettings
from gramlink.services import InfluxService, MosquittoService
from tests.alerts.conftest import Publisher, Registry, now_ms
from tests.factories import unique_id, wait_for


def test_the_api_runs_the_engine_and_shows_its_figures(
    mosquitto: MosquittoService,
    influx: InfluxService,
    registry: Registry,
    publisher: Publisher,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("GRAMLINK_ALERTS_CLIENT_ID", unique_id("alerts"))
    monkeypatch.setenv("GRAMLINK_ALERTS_SESSION_EXPIRY_S", "60")
    monkeypatch.setenv("GRAMLINK_ALERTS_RULES_REFRESH_S", "0.5")
    centre = registry.centre()
    oximeter = registry.device(centre, "pulse_oximeter")
    rule = registry.rule("spo2-low", centre)
    settings = ApiSettings(  # type: ignore[call-arg]
        db_url=registry.url,
        mqtt_url=mosquitto.url,
        mqtt_admin_password=mosquitto.admin_password,
        broker_files_dir=mosquitto.home,
        influx_url=influx.url,
        influx_password=influx.admin_password,
        master_secret="m" * 8 + secrets.token_urlsafe(32),
        sequence_interval_s=0,
    )
    with TestClient(create_app(settings)) as client:
        alerts = client.app.state.alerts  # type: ignore[attr-defined]
        assert alerts is not None and alerts.link.options.username == "admin"
        assert alerts.edge.link.options.username == "admin"
        wait_for(lambda: alerts.connected, 10, "the engine's two sessions")

        def fired() -> bool:  # sent until the engine's subscription is up
            if registry.alert(centre, rule) is None:
                publisher.measurement(centre, oximeter, "pulse_oximeter", now_ms(), spo2_pct=80)
                return False
            return True

        wait_for(fired, 15, "a clinical alert from the engine in the API")
        text = client.get("/metrics").text
        assert 'gramlink_alerts_open{severity="critical"} 1.0' in text
        assert "gramlink_alerts_readings_evaluated_total" in text
        assert "gramlink_alerts_evaluation_lag_seconds_bucket" in text
    assert not alerts.alive


def test_the_api_can_leave_the_engine_to_gramlink_alerts(
    mosquitto: MosquittoService, influx: InfluxService, registry: Registry
) -> None:
    settings = ApiSettings(  # type: ignore[call-arg]
        db_url=registry.url,
        mqtt_url=mosquitto.url,
        mqtt_admin_password=mosquitto.admin_password,
        broker_files_dir=mosquitto.home,
        influx_url=influx.url,
        influx_password=influx.admin_password,
        master_secret="m" * 8 + secrets.token_urlsafe(32),
        sequence_interval_s=0,
        alerts=False,
    )
    with TestClient(create_app(settings)) as client:
        assert client.app.state.alerts is None  # type: ignore[attr-defined]
        assert "gramlink_alerts_" not in client.get("/metrics").text
