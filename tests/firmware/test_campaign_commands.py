"""A campaign's ota commands are ordinary commands (history, status, audit), and its
progress is on /metrics."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from api.schemas import Role
from tests.factories import unique_id, wait_for
from tests.firmware.conftest import LiveApi, LiveApiFactory, RouterFactory

pytestmark = pytest.mark.timeout(180)

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def _deadline() -> str:
    return (datetime.now(UTC) + timedelta(minutes=10)).isoformat()


def _status(api: LiveApi, campaign_id: int, *wanted: str) -> bool:
    return api.get_campaign(campaign_id)["status"] in wanted


def _commands(api: LiveApi, device: str) -> list[dict[str, Any]]:
    with api.http as http:
        answer = http.get(
            f"/v1/devices/{device}/commands?name=ota", headers=api.headers(Role.VIEWER)
        )
    assert answer.status_code == 200, answer.text
    items: list[dict[str, Any]] = answer.json()["items"]
    return items


def _samples(api: LiveApi) -> Samples:
    with api.http as http:
        answer = http.get("/metrics")
    assert answer.status_code == 200
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(answer.text)
        for s in family.samples
    }


def _value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


def test_a_campaigns_ota_command_is_in_the_devices_command_history(
    live_api_factory: LiveApiFactory, routers: RouterFactory
) -> None:
    api = live_api_factory()
    logins = api.provision_routers([unique_id("c") for _ in range(3)])
    routers(logins)
    fw = api.upload("4.0.0", os.urandom(20_000))
    campaign = api.campaign(
        name="history",
        firmware_id=fw["id"],
        target={"device_id": sorted(logins)},
        stages=[100],
        deadline=_deadline(),
        respect_window=False,
        command_ttl_s=300,
    )
    wait_for(lambda: _status(api, campaign["id"], "completed", "halted"), 60, "the campaign")
    done = api.get_campaign(campaign["id"])
    assert done["status"] == "completed", done["reason"]

    for row in done["devices"]:
        (command,) = _commands(api, row["device_id"])
        assert command["id"] == row["command_id"]
        assert command["status"] == "succeeded"
        assert command["actor"] == f"campaign:{campaign['id']}"
        assert command["args"]["version"] == "4.0.0"
        assert command["args"]["sha256"] == fw["sha256"]
        assert command["sent_at"] and command["delivered_at"] and command["finished_at"]
        created = datetime.fromisoformat(command["created_at"])
        expires = datetime.fromisoformat(command["expires_at"])
        assert timedelta(seconds=295) <= expires - created <= timedelta(seconds=305)
        with api.http as http:
            one = http.get(f"/v1/commands/{command['id']}", headers=api.headers(Role.VIEWER))
            assert one.status_code == 200 and one.json()["status"] == "succeeded"
            audit = http.get(
                f"/v1/audit?entity_id={row['device_id']}&limit=100", headers=api.headers()
            ).json()["items"]
        sent = [e for e in audit if e["action"] == "command.send"]
        assert [e["actor"] for e in sent] == [f"campaign:{campaign['id']}"]
        assert sent[0]["after"]["command"] == command["id"]
        assert sent[0]["after"]["campaign"] == campaign["id"]


def test_metrics_count_campaigns_their_devices_and_ota_outcomes(
    live_api_factory: LiveApiFactory, routers: RouterFactory
) -> None:
    api = live_api_factory()
    bad_logins = api.provision_routers([unique_id("c") for _ in range(5)])
    good_logins = api.provision_routers([unique_id("c") for _ in range(2)])
    routers(bad_logins | good_logins)
    bad = api.upload("4.1.0", os.urandom(20_000))
    api.store.path(bad["id"]).write_bytes(os.urandom(20_000))  # no longer its SHA-256
    good = api.upload("4.2.0", os.urandom(20_000))
    common = {"deadline": _deadline(), "respect_window": False}
    halting = api.campaign(
        name="bad",
        firmware_id=bad["id"],
        target={"device_id": sorted(bad_logins)},
        stages=[40, 100],
        failure_threshold=0.2,
        **common,
    )
    completing = api.campaign(
        name="good",
        firmware_id=good["id"],
        target={"device_id": sorted(good_logins)},
        stages=[100],
        **common,
    )
    wait_for(lambda: _status(api, halting["id"], "halted", "completed"), 60, "the halt")
    wait_for(lambda: _status(api, completing["id"], "completed", "halted"), 60, "the end")
    assert api.get_campaign(halting["id"])["status"] == "halted"
    assert api.get_campaign(completing["id"])["status"] == "completed"

    samples = _samples(api)
    assert _value(samples, "gramlink_campaigns", status="halted") == 1
    assert _value(samples, "gramlink_campaigns", status="completed") == 1
    assert _value(samples, "gramlink_campaigns", status="running") == 0
    halted = str(halting["id"])
    devices = {
        state: _value(samples, "gramlink_campaign_devices", campaign=halted, state=state)
        for state in ("waiting", "window", "sent", "downloading", "succeeded", "failed")
    }
    assert devices == {
        "waiting": 3,
        "window": 0,
        "sent": 0,
        "downloading": 0,
        "succeeded": 0,
        "failed": 2,
    }
    assert _value(samples, "gramlink_campaign_stage", campaign=halted) == 1
    # a completed campaign leaves the per-campaign gauges; its outcomes stay counted
    assert not any(dict(labels).get("campaign") == str(completing["id"]) for _, labels in samples)
    ota = "gramlink_campaign_ota_commands_total"
    assert _value(samples, ota, outcome="sent") == 4
    assert _value(samples, ota, outcome="succeeded") == 2
    assert _value(samples, ota, outcome="failed") == 2
    assert _value(samples, ota, outcome="expired") == 0
    assert _value(samples, "gramlink_campaign_runner_last_tick_timestamp_seconds") > 0
    ids = set(bad_logins) | set(good_logins) | {d.rsplit("-", 1)[0] for d in bad_logins}
    assert not any(value in ids for _, labels in samples for _, value in labels)

    failed = [c for d in bad_logins for c in _commands(api, d) if c["status"] == "failed"]
    assert len(failed) == 2 and all("sha256 mismatch" in (c["detail"] or "") for c in failed)
