"""Presence from state topics: online/last seen per device; a centre is online with its gateway."""

from __future__ import annotations

import json

from contract.topics import Channel, topic
from gramlink.services import MosquittoService
from tests.api.conftest import Api
from tests.factories import admin_client, close, unique_id, wait_for


def test_state_messages_drive_online_last_seen_and_centre_presence(
    api: Api, mosquitto: MosquittoService
) -> None:
    centre = api.centre()
    gateway, device = unique_id("gw"), unique_id("d")
    headers = api.headers()
    body = {"id": gateway, "centre_id": centre, "model": "pi"}
    assert api.client.post("/v1/gateways", json=body, headers=headers).status_code == 201
    body = {"id": device, "centre_id": centre, "kind": "router", "model": "m"}
    assert api.client.post("/v1/devices", json=body, headers=headers).status_code == 201
    publisher = admin_client(mosquitto)

    def state(who: str, online: bool) -> None:
        payload = json.dumps({"v": 1, "online": online}).encode()
        publisher.publish(topic(centre, who, Channel.STATE), payload, qos=1).wait_for_publish(5)

    def view(path: str) -> dict[str, object]:
        answer = api.client.get(path, headers=headers)
        assert answer.status_code == 200
        result: dict[str, object] = answer.json()
        return result

    try:
        state(device, True)
        wait_for(lambda: view(f"/v1/devices/{device}")["online"] is True, 10, "device online")
        seen = view(f"/v1/devices/{device}")
        assert seen["status"] == "active"
        assert seen["last_seen"] is not None
        assert view(f"/v1/centres/{centre}")["online"] is False
        state(gateway, True)
        wait_for(lambda: view(f"/v1/centres/{centre}")["online"] is True, 10, "centre online")
        state(gateway, False)
        wait_for(lambda: view(f"/v1/centres/{centre}")["online"] is False, 10, "centre offline")
        publisher.publish(topic(centre, device, Channel.STATE), b"{not json", qos=1)
        state(device, False)
        wait_for(lambda: view(f"/v1/devices/{device}")["online"] is False, 10, "device offline")
    finally:
        close(publisher)
