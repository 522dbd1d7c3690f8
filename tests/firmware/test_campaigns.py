"""Staged campaigns over simulated routers on the real central broker."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.schemas import Role
from tests.api.conftest import Postgres, postgres
from tests.factories import unique_id, wait_for
from tests.firmware.conftest import LiveApi, LiveApiFactory, RouterFactory

pytestmark = pytest.mark.timeout(180)
__all__ = ["postgres"]  # the API tests' PostgreSQL fixture, used here


def _database(request: pytest.FixtureRequest, database: str) -> dict[str, Any]:
    """The API's registry: SQLite (the fixture's default) or a new PostgreSQL database."""
    if database == "sqlite":
        return {}
    pg: Postgres = request.getfixturevalue("postgres")
    return {"db_url": pg.url(pg.create_database())}


def _deadline(minutes: int = 10) -> str:
    return (datetime.now(UTC) + timedelta(minutes=minutes)).isoformat()


def _status(api: LiveApi, campaign_id: int, *wanted: str) -> bool:
    return api.get_campaign(campaign_id)["status"] in wanted


def _audit(api: LiveApi, campaign_id: int) -> list[dict[str, Any]]:
    with api.http as http:
        answer = http.get(f"/v1/audit?entity_id={campaign_id}&limit=100", headers=api.headers())
    items: list[dict[str, Any]] = answer.json()["items"]
    return [e for e in items if e["entity"] == "campaign"]


def test_a_campaign_over_50_routers_completes_in_stages(
    live_api_factory: LiveApiFactory, routers: RouterFactory
) -> None:
    api = live_api_factory()
    district = unique_id("d")
    logins = api.provision_routers([unique_id("c") for _ in range(50)], district=district)
    fleet = routers(logins)
    fw = api.upload("3.0.0", os.urandom(50_000))

    campaign = api.campaign(
        name="fifty",
        firmware_id=fw["id"],
        target={"district": district, "current_version": "1.0.0"},
        stages=[10, 50, 100],
        success_threshold=0.9,
        failure_threshold=0.1,
        deadline=_deadline(),
        respect_window=False,
    )
    assert [s["devices"] for s in campaign["stage_progress"]] == [5, 20, 25]
    wait_for(lambda: _status(api, campaign["id"], "completed", "halted"), 120, "the campaign")

    done = api.get_campaign(campaign["id"])
    assert done["status"] == "completed", done["reason"]
    assert done["counts"] == {"succeeded": 50}
    assert all(d.fw == "3.0.0" for d in fleet.devices.values())
    # A stage's devices were only commanded once the stage before it had succeeded.
    opened = {
        e["after"]["current_stage"]: datetime.fromisoformat(e["at"])
        for e in _audit(api, campaign["id"])
        if e["action"] == "campaign.stage"
    }
    assert sorted(opened) == [1, 2]
    for row in done["devices"]:
        if row["stage"] in opened:
            assert datetime.fromisoformat(row["updated_at"]) >= opened[row["stage"]], row
    earlier = [r for r in done["devices"] if r["stage"] == 0]
    assert all(datetime.fromisoformat(r["updated_at"]) <= opened[1] for r in earlier)

    def registry_versions() -> set[str]:
        with api.http as http:
            answer = http.get("/v1/devices?kind=router&limit=500", headers=api.headers(Role.VIEWER))
        return {d["firmware_version"] for d in answer.json()["items"] if d["id"] in logins}

    # presence records the version each router announced in its birth
    wait_for(lambda: registry_versions() == {"3.0.0"}, 10, "the registry's versions")


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_a_corrupted_firmware_file_halts_the_first_stage(
    live_api_factory: LiveApiFactory,
    routers: RouterFactory,
    request: pytest.FixtureRequest,
    database: str,
) -> None:
    api = live_api_factory(**_database(request, database))
    logins = api.provision_routers([unique_id("c") for _ in range(10)])
    fleet = routers(logins)
    fw = api.upload("3.1.0", os.urandom(60_000))
    path = api.store.path(fw["id"])
    path.write_bytes(os.urandom(60_000))  # the stored file no longer matches its SHA-256

    campaign = api.campaign(
        name="corrupt",
        firmware_id=fw["id"],
        target={"device_id": sorted(logins)},
        stages=[20, 100],
        failure_threshold=0.2,
        deadline=_deadline(),
        respect_window=False,
    )
    wait_for(lambda: _status(api, campaign["id"], "halted", "completed"), 60, "the halt")

    # the first failure halts it; the stage's other router, still downloading then,
    # reports its own failure after the halt
    def first_stage_settled() -> bool:
        devices = api.get_campaign(campaign["id"])["devices"]
        return all(d["state"] == "failed" for d in devices if d["stage"] == 0)

    wait_for(first_stage_settled, 30, "both routers of the first stage failed")
    halted = api.get_campaign(campaign["id"])
    assert halted["status"] == "halted"
    assert "stage 1" in (halted["reason"] or "")
    first = [d for d in halted["devices"] if d["stage"] == 0]
    later = [d for d in halted["devices"] if d["stage"] == 1]
    assert len(first) == 2 and len(later) == 8
    assert all(d["state"] == "failed" and "sha256 mismatch" in d["reason"] for d in first)
    assert all(d["attempts"] == 0 and d["state"] == "waiting" for d in later)
    assert [s["status"] for s in halted["stage_progress"]] == ["failed", "pending"]
    assert {d.fw for d in fleet.devices.values()} == {"1.0.0"}
    assert "campaign.halted" in {e["action"] for e in _audit(api, campaign["id"])}


def test_a_device_inside_its_centres_opening_hours_waits_for_the_window(
    live_api_factory: LiveApiFactory, routers: RouterFactory
) -> None:
    api = live_api_factory()
    centre = unique_id("c")
    logins = api.provision_routers([centre], utc_offset_h=5.5)
    fleet = routers(logins)
    (device_id,) = logins
    fw = api.upload("3.2.0", os.urandom(30_000))
    # 05:00 UTC is 10:30 in the centre (UTC+5:30): open, 09:00-17:00.
    now = [datetime(2026, 12, 2, 5, 0, tzinfo=UTC)]
    api.runner.clock = lambda: now[0]

    campaign = api.campaign(
        name="window", firmware_id=fw["id"], target={"centre_id": [centre]}, deadline=_deadline()
    )
    assert campaign["opening_hours"] == "09:00-17:00"

    def row() -> dict[str, Any]:
        devices: list[dict[str, Any]] = api.get_campaign(campaign["id"])["devices"]
        return devices[0]

    wait_for(lambda: row()["state"] == "window", 30, "the device skipped by the window")
    assert "10:30 local" in row()["reason"]
    ticks = api.runner.ticks
    wait_for(lambda: api.runner.ticks >= ticks + 5, 30, "five more runner passes")
    assert row()["attempts"] == 0 and fleet.devices[device_id].fw == "1.0.0"

    with api.http as http:
        paused = http.post(f"/v1/campaigns/{campaign['id']}/pause", headers=api.headers())
        assert paused.status_code == 200 and paused.json()["status"] == "paused"
        refused = http.post(
            f"/v1/campaigns/{campaign['id']}/resume", headers=api.headers(Role.TECHNICIAN)
        )
        assert refused.status_code == 403
        now[0] = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)  # 17:30 local: closed
        ticks = api.runner.ticks
        wait_for(lambda: api.runner.ticks >= ticks + 5, 30, "five passes while paused")
        assert row()["attempts"] == 0  # paused: nothing sent
        resumed = http.post(f"/v1/campaigns/{campaign['id']}/resume", headers=api.headers())
        assert resumed.json()["status"] == "running"

    wait_for(lambda: _status(api, campaign["id"], "completed"), 60, "the update after closing")
    assert fleet.devices[device_id].fw == "3.2.0"
    actions = [e["action"] for e in _audit(api, campaign["id"])]
    assert {"campaign.create", "campaign.pause", "campaign.resume", "campaign.completed"} <= set(
        actions
    )


def test_an_api_restart_continues_the_campaign(
    live_api_factory: LiveApiFactory, routers: RouterFactory, tmp_path: Path
) -> None:
    db_url, files = f"sqlite:///{tmp_path / 'restart.sqlite'}", tmp_path / "restart-fw"
    first = live_api_factory(db_url=db_url, firmware_dir=files)
    # At 05:00 UTC centres on UTC+5:30 are open (10:30), centres on UTC-7 closed (22:00).
    open_now = [unique_id("c") for _ in range(2)]
    closed_now = [unique_id("c") for _ in range(2)]
    logins = first.provision_routers(open_now, utc_offset_h=5.5)
    logins |= first.provision_routers(closed_now, utc_offset_h=-7)
    fleet = routers(logins)
    first.runner.clock = lambda: datetime(2026, 12, 2, 5, 0, tzinfo=UTC)
    fw = first.upload("3.3.0", os.urandom(20_000))
    campaign = first.campaign(
        name="restart", firmware_id=fw["id"], stages=[100], deadline=_deadline()
    )

    def states(api: LiveApi) -> dict[str, str]:
        return {d["device_id"]: d["state"] for d in api.get_campaign(campaign["id"])["devices"]}

    wait_for(
        lambda: (
            states(first)
            == {
                **{f"{c}-rtr1": "window" for c in open_now},
                **{f"{c}-rtr1": "succeeded" for c in closed_now},
            }
        ),
        60,
        "the closed centres updated, the open ones waiting",
    )
    first.stop()

    second = live_api_factory(db_url=db_url, firmware_dir=files)
    second.runner.clock = lambda: datetime(2026, 12, 2, 13, 0, tzinfo=UTC)  # 18:30 / 06:00
    wait_for(lambda: _status(second, campaign["id"], "completed"), 60, "the campaign's end")

    rows = second.get_campaign(campaign["id"])["devices"]
    assert {r["state"] for r in rows} == {"succeeded"}
    assert all(r["attempts"] == 1 for r in rows)  # nothing sent twice across the restart
    assert {d.fw for d in fleet.devices.values()} == {"3.3.0"}


def test_an_offline_router_is_retried_until_it_is_back(
    live_api_factory: LiveApiFactory, routers: RouterFactory
) -> None:
    api = live_api_factory()
    online, offline = unique_id("c"), unique_id("c")
    logins = api.provision_routers([online, offline])
    first = routers({k: v for k, v in logins.items() if k.startswith(online)})
    fw = api.upload("3.4.0", os.urandom(10_000))
    campaign = api.campaign(
        name="offline",
        firmware_id=fw["id"],
        stages=[100],
        deadline=_deadline(),
        respect_window=False,
        target={"centre_id": [online, offline]},
    )

    def row(device: str) -> dict[str, Any]:
        rows = api.get_campaign(campaign["id"])["devices"]
        return next(r for r in rows if r["device_id"] == device)

    wait_for(lambda: row(f"{online}-rtr1")["state"] == "succeeded", 60, "the online router")
    late = row(f"{offline}-rtr1")
    assert late["state"] == "waiting" and "offline" in late["reason"] and late["attempts"] == 0
    assert api.get_campaign(campaign["id"])["status"] == "running"

    second = routers({k: v for k, v in logins.items() if k.startswith(offline)})
    wait_for(lambda: _status(api, campaign["id"], "completed"), 60, "the late router's update")
    assert first.devices[f"{online}-rtr1"].fw == second.devices[f"{offline}-rtr1"].fw == "3.4.0"


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_campaign_requests_are_checked_and_admin_only(
    live_api_factory: LiveApiFactory, request: pytest.FixtureRequest, database: str
) -> None:
    api = live_api_factory(campaign_interval_s=0, **_database(request, database))
    centre = unique_id("c")
    api.provision_routers([centre])
    fw = api.upload("3.5.0", os.urandom(1000))
    other = api.upload("1.0.0", os.urandom(1000), kind="thermometer", model="t1")
    good = {"name": "n", "firmware_id": fw["id"], "deadline": _deadline()}
    with api.http as http:

        def post(body: dict[str, Any], role: Role = Role.ADMIN) -> httpx.Response:
            return http.post("/v1/campaigns", json=body, headers=api.headers(role))

        assert post(good, Role.TECHNICIAN).status_code == 403
        for body, field in (
            ({**good, "stages": [50, 20, 100]}, "body.stages"),
            ({**good, "stages": [10, 50]}, "body.stages"),
            ({**good, "opening_hours": "9-5"}, "body.opening_hours"),
            ({**good, "kind": "thermometer"}, "body.kind"),
            ({**good, "firmware_id": 9999}, "body.firmware_id"),
            ({**good, "firmware_id": other["id"]}, "body.target"),
            ({**good, "target": {"centre_id": [unique_id("c")]}}, "body.target"),
        ):
            answer = post(body)
            assert answer.status_code == 422, (body, answer.text)
            problem = answer.json()
            fields = {e["field"] for e in problem.get("errors", [])} | {problem.get("field")}
            assert any(f and f.startswith(field) for f in fields), (field, problem)
        created = post({**good, "target": {"centre_id": [centre]}})
        assert created.status_code == 201
        cid = created.json()["id"]
        twice = post({**good, "target": {"centre_id": [centre]}})
        assert twice.status_code == 409 and str(cid) in twice.json()["detail"]
        assert http.post(f"/v1/campaigns/{cid}/resume", headers=api.headers()).status_code == 409
        assert http.post(f"/v1/campaigns/{cid}/cancel", headers=api.headers()).status_code == 200
        assert http.post(f"/v1/campaigns/{cid}/pause", headers=api.headers()).status_code == 409
        assert http.delete(f"/v1/firmware/{fw['id']}", headers=api.headers()).status_code == 409
