"""Who may do what with alerting: viewers read, technicians act on alerts and silences,
admins manage rules and channels."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from api.schemas import Role
from tests.api.alert_helpers import BATTERY_LOW, insert_alert
from tests.api.conftest import Api

RANK = {Role.VIEWER: 0, Role.TECHNICIAN: 1, Role.ADMIN: 2}


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    least: Role  # the least role allowed
    status: int  # its answer then
    body: object = None


def _later() -> str:
    return (datetime.now(UTC) + timedelta(hours=1)).isoformat()


CALLS = [
    Call("GET", "/v1/alert-rules", Role.VIEWER, 200),
    Call("GET", "/v1/alert-rules/{rule}", Role.VIEWER, 200),
    Call("POST", "/v1/alert-rules", Role.ADMIN, 201, BATTERY_LOW),
    Call("PUT", "/v1/alert-rules/{rule}", Role.ADMIN, 200, BATTERY_LOW),
    Call("PATCH", "/v1/alert-rules/{rule}", Role.ADMIN, 200, {"severity": "info"}),
    Call("POST", "/v1/alert-rules/{rule}/disable", Role.ADMIN, 200),
    Call("DELETE", "/v1/alert-rules/{rule}", Role.ADMIN, 204),
    Call("GET", "/v1/alerts", Role.VIEWER, 200),
    Call("GET", "/v1/alerts/counts", Role.VIEWER, 200),
    Call("GET", "/v1/alerts/{alert}", Role.VIEWER, 200),
    Call("POST", "/v1/alerts/{alert}/acknowledge", Role.TECHNICIAN, 200, {"note": "n"}),
    Call("POST", "/v1/alerts/{alert}/resolve", Role.TECHNICIAN, 200),
    Call("POST", "/v1/alerts/{alert}/silence", Role.TECHNICIAN, 201, {"ends_at": "{later}"}),
    Call("GET", "/v1/silences", Role.VIEWER, 200),
    Call("POST", "/v1/silences", Role.TECHNICIAN, 201, {"severity": "info", "ends_at": "{later}"}),
    Call("GET", "/v1/notification-channels", Role.ADMIN, 200),
    Call(
        "POST",
        "/v1/notification-channels",
        Role.ADMIN,
        201,
        {"name": "n", "url": "http://127.0.0.1:9/"},
    ),
]


@pytest.mark.parametrize("call", CALLS, ids=lambda c: f"{c.method} {c.path}")
def test_alerting_roles(api: Api, call: Call) -> None:
    for role in (Role.VIEWER, Role.TECHNICIAN, Role.ADMIN):
        rule = api.client.post("/v1/alert-rules", json=BATTERY_LOW, headers=api.headers())
        alert = insert_alert(api, api.centre())
        path = call.path.format(rule=rule.json()["id"], alert=alert)
        body = call.body
        if isinstance(body, dict):
            body = {k: _later() if v == "{later}" else v for k, v in body.items()}
        answer = api.client.request(call.method, path, json=body, headers=api.headers(role))
        expected = call.status if RANK[role] >= RANK[call.least] else 403
        assert answer.status_code == expected, f"{role.value}: {answer.text[:200]}"
    assert api.client.request(call.method, path, json=body).status_code == 401
