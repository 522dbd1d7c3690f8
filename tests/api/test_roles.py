"""Role matrix: each role x each endpoint gets the right status."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from api.schemas import Role
from api.services.tokens import create_token
from tests.api.conftest import Api
from tests.factories import unique_id


@dataclass
class Setup:
    centre: str
    empty_centre: str
    device: str
    gateway: str
    spare_token: int


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    admin_only: bool
    admin_status: int
    body: object = None
    csv: bool = False


def _endpoints() -> list[Endpoint]:
    new = "{new}"
    return [
        Endpoint("GET", "/v1/centres", False, 200),
        Endpoint("GET", "/v1/centres/{centre}", False, 200),
        Endpoint("POST", "/v1/centres", True, 201, {"id": new, "name": "n"}),
        Endpoint("PATCH", "/v1/centres/{centre}", True, 200, {"village": "v"}),
        Endpoint("DELETE", "/v1/centres/{empty_centre}", True, 204),
        Endpoint("POST", "/v1/centres/{centre}/rotate-key", True, 200),
        Endpoint("GET", "/v1/devices", False, 200),
        Endpoint("GET", "/v1/devices/{device}", False, 200),
        Endpoint(
            "POST",
            "/v1/devices",
            True,
            201,
            {"id": new, "centre_id": "{centre}", "kind": "router", "model": "m"},
        ),
        Endpoint(
            "POST",
            "/v1/devices/bulk",
            True,
            201,
            "centre_id,device_id,kind,model\n{centre},{new},router,m\n",
            csv=True,
        ),
        Endpoint("PATCH", "/v1/devices/{device}", True, 200, {"firmware_version": "2.0"}),
        Endpoint("POST", "/v1/devices/{device}/rotate", True, 200),
        Endpoint("POST", "/v1/devices/{device}/suspend", True, 200),
        Endpoint("POST", "/v1/devices/{device}/decommission", True, 200),
        Endpoint("GET", "/v1/devices/{device}/telemetry/latest", False, 200),
        Endpoint(
            "GET",
            "/v1/devices/{device}/telemetry?start=2024-01-01T00:00:00Z&end=2024-01-02T00:00:00Z",
            False,
            200,
        ),
        Endpoint("GET", "/v1/gateways", False, 200),
        Endpoint("GET", "/v1/gateways/{gateway}", False, 200),
        Endpoint(
            "POST", "/v1/gateways", True, 201, {"id": new, "centre_id": "{centre}", "model": "pi"}
        ),
        Endpoint("POST", "/v1/gateways/{gateway}/rotate", True, 200),
        Endpoint("POST", "/v1/gateways/{gateway}/suspend", True, 200),
        Endpoint("GET", "/v1/audit", True, 200),
        Endpoint("GET", "/v1/tokens", True, 200),
        Endpoint("POST", "/v1/tokens/{spare_token}/revoke", True, 200),
    ]


def _fill(value: object, setup: Setup, new: str) -> object:
    if isinstance(value, str):
        return value.format(new=new, **setup.__dict__)
    if isinstance(value, dict):
        return {k: _fill(v, setup, new) for k, v in value.items()}
    return value


@pytest.fixture
def setup(api: Api) -> Setup:
    centre = api.centre()
    device, gateway = unique_id("d"), unique_id("gw")
    headers = api.headers()
    body = {"id": device, "centre_id": centre, "kind": "thermometer", "model": "m"}
    assert api.client.post("/v1/devices", json=body, headers=headers).status_code == 201
    body = {"id": gateway, "centre_id": centre, "model": "pi"}
    assert api.client.post("/v1/gateways", json=body, headers=headers).status_code == 201
    sessions = api.client.app.state.components.sessions  # type: ignore[attr-defined]
    with sessions.begin() as session:
        create_token(session, Role.VIEWER, "spare")
    listed = api.client.get("/v1/tokens", params={"limit": 500}, headers=headers).json()
    spare = max(t["id"] for t in listed["items"] if t["name"] == "spare")
    return Setup(centre, api.centre(), device, gateway, spare)


@pytest.mark.parametrize("endpoint", _endpoints(), ids=lambda e: f"{e.method} {e.path}")
def test_role_matrix(api: Api, setup: Setup, endpoint: Endpoint) -> None:
    path = str(_fill(endpoint.path, setup, ""))
    callers: list[tuple[str, dict[str, str], int]] = [
        ("no token", {}, 401),
        ("unknown token", {"Authorization": "Bearer glt_unknown"}, 401),
    ]
    for role in (Role.VIEWER, Role.TECHNICIAN, Role.ADMIN):
        expected = endpoint.admin_status
        if endpoint.admin_only and role is not Role.ADMIN:
            expected = 403
        callers.append((role.value, api.headers(role), expected))
    for who, headers, expected in callers:
        body = _fill(endpoint.body, setup, unique_id("n"))
        kwargs: dict[str, object] = {"headers": headers}
        if endpoint.csv:
            kwargs = {"headers": {**headers, "content-type": "text/csv"}, "content": body}
        elif body is not None:
            kwargs["json"] = body
        answer = api.client.request(endpoint.method, path, **kwargs)  # type: ignore[arg-type]
        assert answer.status_code == expected, f"{who}: {answer.status_code} {answer.text[:200]}"
        if expected >= 400:
            assert answer.headers["content-type"] == "application/problem+json"
