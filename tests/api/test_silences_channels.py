"""``/v1/silences`` (technicians+) and ``/v1/notification-channels`` (admins; secret write-only)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from api.db.models import NotificationChannel
from api.schemas import Role
from tests.api.alert_helpers import audit_of, sessions
from tests.api.conftest import Api


def _at(hours: float) -> str:
    return (datetime.now(UTC) + timedelta(hours=hours)).isoformat()


def test_a_technician_silences_a_centre_for_maintenance_and_ends_it(registry_api: Api) -> None:
    api = registry_api
    centre = api.centre()
    tech = api.headers(Role.TECHNICIAN)
    body = {"centre": centre, "ends_at": _at(2), "comment": "replacing the battery bank"}
    created = api.client.post("/v1/silences", json=body, headers=tech)
    assert created.status_code == 201, created.text
    silence = created.json()
    assert silence["active"] is True and silence["created_by"] == "token:test-technician"
    assert silence["centre"] == centre and silence["rule_id"] is None
    later = {"severity": "info", "starts_at": _at(1), "ends_at": _at(3)}
    scheduled = api.client.post("/v1/silences", json=later, headers=tech).json()
    assert scheduled["active"] is False

    listed = api.client.get("/v1/silences", headers=api.headers(Role.VIEWER)).json()
    assert {silence["id"], scheduled["id"]} <= {s["id"] for s in listed["items"]}
    assert api.client.delete(f"/v1/silences/{silence['id']}", headers=tech).status_code == 204
    ended = api.client.get(f"/v1/silences/{silence['id']}", headers=tech).json()
    assert ended["active"] is False
    assert datetime.fromisoformat(ended["ends_at"]) <= datetime.now(UTC)
    current = api.client.get("/v1/silences", headers=tech).json()
    assert silence["id"] not in {s["id"] for s in current["items"]}
    everything = api.client.get("/v1/silences", params={"expired": True}, headers=tech).json()
    assert silence["id"] in {s["id"] for s in everything["items"]}
    actions = [e.action for e in audit_of(api, str(silence["id"]))]
    assert actions == ["silence.create", "silence.expire"]


def _refused(api: Api, body: dict[str, Any]) -> list[str]:
    answer = api.client.post("/v1/silences", json=body, headers=api.headers(Role.TECHNICIAN))
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    return [e["field"] for e in answer.json()["errors"]]


def test_a_silence_must_end_after_it_starts_and_match_something(api: Api) -> None:
    assert _refused(api, {"centre": "c-1", "starts_at": _at(2), "ends_at": _at(1)}) == [
        "body.ends_at"
    ]
    assert _refused(api, {"centre": "c-1", "ends_at": _at(-1)}) == ["body.ends_at"]
    assert _refused(api, {"ends_at": _at(1)}) == ["body.centre"]
    assert _refused(api, {"centre": "c-1"}) == ["body.ends_at"]


def test_viewers_cannot_silence(api: Api) -> None:
    body = {"centre": "c-1", "ends_at": _at(1)}
    answer = api.client.post("/v1/silences", json=body, headers=api.headers(Role.VIEWER))
    assert answer.status_code == 403


def test_a_channel_secret_is_shown_once_and_never_again(registry_api: Api) -> None:
    api, admin = registry_api, registry_api.headers()
    body = {
        "name": "district SMS",
        "url": "https://sms.example/hook",
        "scope": {"kind": "district", "value": "Sitapur"},
        "min_severity": "warning",
    }
    created = api.client.post("/v1/notification-channels", json=body, headers=admin)
    assert created.status_code == 201, created.text
    secret = created.json()["secret"]
    assert len(secret) >= 32
    channel_id = created.json()["id"]
    given = api.client.post(
        "/v1/notification-channels",
        json={**body, "secret": "s" * 24},
        headers=admin,
    ).json()
    assert given["secret"] == "s" * 24

    got = api.client.get(f"/v1/notification-channels/{channel_id}", headers=admin)
    listed = api.client.get("/v1/notification-channels", headers=admin)
    patched = api.client.patch(
        f"/v1/notification-channels/{channel_id}",
        json={"secret": "n" * 32, "enabled": False},
        headers=admin,
    )
    for answer in (got, listed, patched):
        assert answer.status_code == 200, answer.text
        assert "secret" not in answer.text and secret not in answer.text
        assert "n" * 32 not in answer.text
    assert got.json()["scope"] == {"kind": "district", "value": "Sitapur"}
    assert patched.json()["enabled"] is False
    with sessions(api)() as session:
        assert session.get(NotificationChannel, channel_id).secret == "n" * 32
    entries = audit_of(api, str(channel_id))
    assert [e.action for e in entries] == [
        "notification_channel.create",
        "notification_channel.update",
    ]
    assert all(secret not in str(e.after) and "n" * 32 not in str(e.after) for e in entries)
    assert entries[1].after["secret_changed"] is True
    assert (
        api.client.delete(f"/v1/notification-channels/{channel_id}", headers=admin).status_code
        == 204
    )
    assert (
        api.client.get(f"/v1/notification-channels/{channel_id}", headers=admin).status_code == 404
    )


def test_a_channel_needs_an_http_url_and_a_valid_scope(api: Api) -> None:
    admin = api.headers()
    for body, field in (
        ({"name": "x", "url": "ftp://example/hook"}, "body.url"),
        ({"name": "x", "url": "http://example/hook", "secret": "short"}, "body.secret"),
        (
            {"name": "x", "url": "http://example/hook", "scope": {"kind": "centre"}},
            "body.scope.value",
        ),
    ):
        answer = api.client.post("/v1/notification-channels", json=body, headers=admin)
        assert answer.status_code == 422, answer.text
        assert [e["field"] for e in answer.json()["errors"]] == [field]


def test_only_admins_see_or_change_channels(api: Api) -> None:
    for role in (Role.VIEWER, Role.TECHNICIAN):
        headers = api.headers(role)
        assert api.client.get("/v1/notification-channels", headers=headers).status_code == 403
        body = {"name": "x", "url": "http://example/hook"}
        answer = api.client.post("/v1/notification-channels", json=body, headers=headers)
        assert answer.status_code == 403
