"""Commands to simulated devices against the real central broker: round trip, offline, expiry."""

from __future__ import annotations

import json

from api.schemas import Role
from gramlink.services import MosquittoService
from tests.api.conftest import Api, ApiFactory, DeviceFleet
from tests.api.device_sim import command_state, provision, wait_status
from tests.api.mqtt_helpers import Watcher
from tests.factories import unique_id, wait_for


def _send(api: Api, device: str, body: dict[str, object], role: Role = Role.TECHNICIAN) -> str:
    answer = api.client.post(f"/v1/devices/{device}/commands", json=body, headers=api.headers(role))
    assert answer.status_code == 201, answer.text
    assert answer.json()["status"] == "pending"
    command_id: str = answer.json()["id"]
    return command_id


def test_a_command_round_trip_with_expiry_in_the_message_and_the_mqtt_expiry(
    registry_api: Api, mosquitto: MosquittoService, device_fleet: DeviceFleet
) -> None:
    api = registry_api
    centre = api.centre()
    device = unique_id("rtr")
    fleet = device_fleet(
        mosquitto, [(centre, device, "router")], {device: provision(api, centre, device)}
    )
    watcher = Watcher(mosquitto)
    try:
        body = {"name": "set_interval", "args": {"interval_s": 7}, "expires_in_s": 120}
        command_id = _send(api, device, body)
        done = wait_status(api, command_id, "succeeded")
        wire = next(
            m for m in watcher.received.messages if m.topic == f"gl/v1/{centre}/{device}/cmd"
        )
    finally:
        watcher.close()
    assert fleet.devices[device].interval_ms == 7000, "the device reports every 7 s now"
    assert done["detail"] == "interval_s=7"
    assert done["sent_at"] <= done["delivered_at"] <= done["finished_at"]
    message = json.loads(wire.payload)
    assert message["id"] == command_id and message["name"] == "set_interval"
    assert message["expires"] > 0
    assert 110 <= wire.properties.MessageExpiryInterval <= 120

    headers = api.headers(Role.VIEWER)
    path = f"/v1/devices/{device}/commands"
    found = api.client.get(path, params={"status": "succeeded"}, headers=headers).json()
    assert [c["id"] for c in found["items"]] == [command_id]
    assert api.client.get(path, params={"status": "pending"}, headers=headers).json()["total"] == 0
    assert api.client.get(path, params={"name": "reboot"}, headers=headers).json()["total"] == 0


def test_a_command_to_an_offline_device_runs_when_it_returns_an_expired_one_never(
    api: Api, mosquitto: MosquittoService, device_fleet: DeviceFleet
) -> None:
    centre = api.centre()
    device = unique_id("rtr")
    creds = {device: provision(api, centre, device)}
    roster = [(centre, device, "router")]
    device_fleet(mosquitto, roster, creds).stop(drain_s=2)  # its session stays on the broker
    stale = _send(
        api, device, {"name": "set_interval", "args": {"interval_s": 9}, "expires_in_s": 1}
    )
    live = _send(api, device, {"name": "identify", "args": {"duration_s": 5}})
    wait_status(api, stale, "expired")
    assert command_state(api, live)["status"] == "pending"

    back = device_fleet(mosquitto, roster, creds)
    done = wait_status(api, live, "succeeded")
    assert done["detail"] == "blinking for 5 s"
    # The broker delivers a session's messages in order: had the stale command reached the
    # device, it would have been run (or refused) before the live one.
    gone = command_state(api, stale)
    assert gone["status"] == "expired" and gone["delivered_at"] is None
    assert back.devices[device].interval_ms == 60_000, "the expired interval never applied"


def test_the_same_command_to_many_devices_by_filter_at_a_bounded_rate(
    api_factory: ApiFactory, mosquitto: MosquittoService, device_fleet: DeviceFleet
) -> None:
    api = api_factory(command_rate_per_s=2)
    district = unique_id("dist")
    hub = api.centre(district=district)
    spoke = api.centre(district=district, hub_id=hub)
    other = api.centre()
    roster = [(c, unique_id("rtr"), "router") for c in (hub, spoke, spoke, hub, spoke)]
    roster += [(hub, unique_id("pwr"), "power"), (other, unique_id("rtr"), "router")]
    creds = {d: provision(api, c, d, k) for c, d, k in roster}
    fleet = device_fleet(mosquitto, roster, creds)

    body = {
        "name": "set_interval",
        "args": {"interval_s": 11},
        "filter": {"kind": "router", "hub_id": hub},
    }
    answer = api.client.post("/v1/commands", json=body, headers=api.headers(Role.TECHNICIAN))
    assert answer.status_code == 202, answer.text
    batch = answer.json()
    assert batch["total"] == 5
    assert batch["waiting"] == 5, "nothing published before the dispatcher's turn"
    path = f"/v1/command-batches/{batch['id']}"
    seen_waiting: set[int] = set()

    def finished() -> bool:
        view = api.client.get(path, headers=api.headers(Role.VIEWER)).json()
        seen_waiting.add(view["waiting"])
        return bool(view["done"])

    wait_for(finished, 30, "the batch done")
    view = api.client.get(path, headers=api.headers(Role.VIEWER)).json()
    assert view["counts"]["succeeded"] == 5
    assert any(0 < w < 5 for w in seen_waiting), "sent a few at a time (2 per second)"
    routers = [d for c, d, k in roster if k == "router" and c != other]
    assert all(fleet.devices[d].interval_ms == 11_000 for d in routers)
    untouched = [d for c, d, _ in roster if d not in routers]
    assert all(fleet.devices[d].interval_ms == 60_000 for d in untouched)

    by_district = {"name": "reboot", "filter": {"district": district}}
    answer = api.client.post("/v1/commands", json=by_district, headers=api.headers())
    assert answer.json()["total"] == 6  # the power unit too, not the other centre


def test_unknown_commands_and_bad_arguments_are_422_naming_the_field(api: Api) -> None:
    centre = api.centre()
    device = unique_id("rtr")
    provision(api, centre, device)
    headers = api.headers(Role.TECHNICIAN)
    path = f"/v1/devices/{device}/commands"
    cases = [
        ({"name": "selfdestruct"}, "body.name"),
        ({"name": "set_interval", "args": {"interval_s": 0}}, "body.args.interval_s"),
        ({"name": "set_interval", "args": {}}, "body.args.interval_s"),
        ({"name": "set_interval", "args": {"interval_s": "5"}}, "body.args.interval_s"),
        ({"name": "reboot", "args": {"force": True}}, "body.args.force"),
        (
            {"name": "ota", "args": {"url": "ftp://x", "sha256": "0" * 64, "version": "2"}},
            "body.args.url",
        ),
        ({"name": "reboot", "expires_in_s": 0}, "body.expires_in_s"),
    ]
    for body, field in cases:
        answer = api.client.post(path, json=body, headers=headers)
        assert answer.status_code == 422, (body, answer.text)
        assert field in [e["field"] for e in answer.json()["errors"]], (body, answer.json())
    batch = {"name": "identify", "args": {"duration_s": -1}, "filter": {"centre_id": centre}}
    answer = api.client.post("/v1/commands", json=batch, headers=headers)
    assert answer.status_code == 422
    assert answer.json()["errors"][0]["field"] == "body.args.duration_s"
    history = api.client.get(path, headers=headers).json()
    assert history["total"] == 0, "nothing was recorded or sent"


def test_viewers_read_technicians_send_and_every_command_is_audited(api: Api) -> None:
    centre = api.centre()
    device = unique_id("rtr")
    provision(api, centre, device)
    path = f"/v1/devices/{device}/commands"
    answer = api.client.post(path, json={"name": "reboot"}, headers=api.headers(Role.VIEWER))
    assert answer.status_code == 403
    batch = {"name": "reboot", "filter": {"centre_id": centre}}
    answer = api.client.post("/v1/commands", json=batch, headers=api.headers(Role.VIEWER))
    assert answer.status_code == 403
    command_id = _send(api, device, {"name": "reboot"})
    assert api.client.get(path, headers=api.headers(Role.VIEWER)).json()["total"] == 1
    audit = api.client.get("/v1/audit", params={"entity_id": device}, headers=api.headers())
    actions = [(e["action"], e["actor"]) for e in audit.json()["items"]]
    assert ("command.send", "token:test-technician") in actions
    entry = next(e for e in audit.json()["items"] if e["action"] == "command.send")
    assert entry["after"]["command"] == command_id
