"""Helpers of the device-management tests (the ``device_fleet`` fixture is in conftest)."""

from __future__ import annotations

from typing import Any

from tests.api.conftest import Api
from tests.factories import wait_for


def provision(api: Api, centre: str, device: str, kind: str = "router") -> tuple[str, str]:
    """Provision ``device`` through the API; its (username, password)."""
    answer = api.post_device(centre, device, kind)
    assert answer.status_code == 201, answer.text
    creds = answer.json()["credentials"]
    return creds["username"], creds["password"]


def command_state(api: Api, command_id: str) -> dict[str, Any]:
    answer = api.client.get(f"/v1/commands/{command_id}", headers=api.headers())
    assert answer.status_code == 200, answer.text
    found: dict[str, Any] = answer.json()
    return found


def wait_status(api: Api, command_id: str, status: str, timeout: float = 20) -> dict[str, Any]:
    wait_for(lambda: command_state(api, command_id)["status"] == status, timeout, status)
    return command_state(api, command_id)
