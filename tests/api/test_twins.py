"""Device twins with simulated devices: desired → reported, the difference, not-applied lists."""

from __future__ import annotations

from typing import Any

from api.schemas import Role
from gramlink.services import MosquittoService
from tests.api.conftest import Api, DeviceFleet
from tests.api.device_sim import provision
from tests.factories import unique_id, wait_for


def _twin(api: Api, device: str) -> dict[str, Any]:
    answer = api.client.get(f"/v1/devices/{device}/twin", headers=api.headers(Role.VIEWER))
    assert answer.status_code == 200, answer.text
    found: dict[str, Any] = answer.json()
    return found


def _put(api: Api, device: str, config: dict[str, Any], role: Role = Role.TECHNICIAN) -> Any:
    return api.client.put(
        f"/v1/devices/{device}/twin/desired", json={"config": config}, headers=api.headers(role)
    )


def _not_applied(api: Api, **params: str) -> list[str]:
    answer = api.client.get("/v1/twins/not-applied", params=params, headers=api.headers())
    assert answer.status_code == 200, answer.text
    return [item["device_id"] for item in answer.json()["items"]]


def test_desired_reaches_the_device_and_the_not_applied_list_follows(
    registry_api: Api, mosquitto: MosquittoService, device_fleet: DeviceFleet
) -> None:
    api = registry_api
    district = unique_id("dist")
    centre = api.centre(district=district)
    online, offline = unique_id("rtr"), unique_id("pwr")
    creds = {
        online: provision(api, centre, online),
        offline: provision(api, centre, offline, "power"),
    }
    fleet = device_fleet(mosquitto, [(centre, online, "router")], {online: creds[online]})

    answer = _put(api, online, {"interval_s": 9, "led": False})
    assert answer.status_code == 200, answer.text
    assert answer.json()["desired"]["version"] == 1
    wait_for(lambda: _twin(api, online)["applied"], 15, "the router applied its twin")
    twin = _twin(api, online)
    assert twin["reported"] == {
        **twin["reported"],
        "version": 1,
        "config": {"interval_s": 9, "led": False},
    }
    assert twin["difference"] == {}
    assert fleet.devices[online].interval_ms == 9000

    second = _put(api, online, {"interval_s": 12})
    assert second.json()["desired"]["version"] == 2, "the version grows with every change"
    wait_for(lambda: _twin(api, online)["reported"]["version"] == 2, 15, "version 2 reported")
    assert fleet.devices[online].interval_ms == 12_000

    assert _put(api, offline, {"interval_s": 30, "low_battery_pct": 20}).status_code == 200
    waiting = _twin(api, offline)
    assert waiting["applied"] is False and waiting["reported"] is None
    assert waiting["difference"] == {
        "interval_s": {"desired": 30, "reported": None},
        "low_battery_pct": {"desired": 20, "reported": None},
    }
    assert _not_applied(api, centre_id=centre) == [offline]
    assert _not_applied(api, district=district) == [offline]
    assert _not_applied(api, district=unique_id("elsewhere")) == []

    # It comes online: the retained desired twin is waiting for it on the broker.
    later = device_fleet(mosquitto, [(centre, offline, "power")], {offline: creds[offline]})
    wait_for(lambda: not _not_applied(api, centre_id=centre), 15, "everyone applied")
    assert later.devices[offline].interval_ms == 30_000
    assert _twin(api, offline)["difference"] == {}


def test_bad_twins_are_422_naming_the_field_and_viewers_cannot_set_them(api: Api) -> None:
    centre = api.centre()
    device = unique_id("rtr")
    provision(api, centre, device)
    cases = [
        ({"interval_s": 0}, "body.config.interval_s"),
        ({"led": "yes"}, "body.config.led"),
        ({"colour": "red"}, "body.config.colour"),
        ({"low_battery_pct": 20}, "body.config.low_battery_pct"),  # a power unit's, not a router's
    ]
    for config, field in cases:
        answer = _put(api, device, config)
        assert answer.status_code == 422, (config, answer.text)
        assert [e["field"] for e in answer.json()["errors"]] == [field]
    assert _put(api, device, {"interval_s": 5}, Role.VIEWER).status_code == 403
    assert _twin(api, device)["desired"] is None, "nothing was stored"
    assert _put(api, device, {"interval_s": 5}).status_code == 200
    audit = api.client.get("/v1/audit", params={"entity_id": device}, headers=api.headers())
    entry = next(e for e in audit.json()["items"] if e["action"] == "twin.desired")
    assert entry["actor"] == "token:test-technician"
    assert entry["after"] == {"version": 1, "config": {"interval_s": 5}}
