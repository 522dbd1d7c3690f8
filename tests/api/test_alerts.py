"""``/v1/alerts``: filters, one alert with history and deliveries, acknowledge, resolve, counts.

The rows are inserted as the engine would write them.
"""

from __future__ import annotations

from typing import Any

import pytest

from api.db.models import AlertCondition
from api.schemas import Role
from tests.api.alert_helpers import condition_state, insert_alert, sessions
from tests.api.conftest import Api
from tests.factories import unique_id


def _ids(api: Api, role: Role = Role.VIEWER, **params: Any) -> set[str]:
    answer = api.client.get("/v1/alerts", params=params, headers=api.headers(role))
    assert answer.status_code == 200, answer.text
    return {a["id"] for a in answer.json()["items"]}


def test_alerts_filter_by_centre_hub_district_state_severity_clinical_and_state(
    registry_api: Api,
) -> None:
    api = registry_api
    district, region = unique_id("district"), unique_id("state")
    hub = api.centre(district=district, state=region)
    spoke = api.centre(hub_id=hub, district=district, state=region)
    elsewhere = api.centre(district=unique_id("district"))
    at_hub = insert_alert(api, hub)
    at_spoke = insert_alert(
        api,
        spoke,
        severity="critical",
        clinical=True,
        device="ox-1",
        rule_id="spo2-low",
        patient_ref="p-7f3a",
    )
    far = insert_alert(api, elsewhere, severity="critical")
    done = insert_alert(api, spoke, state="resolved", resolved_ms=1_700_000_900_000)

    assert _ids(api, centre=spoke) == {at_spoke, done}
    assert _ids(api, hub=hub) == {at_hub, at_spoke, done}
    assert _ids(api, district=district) == {at_hub, at_spoke, done}
    assert _ids(api, region_state=region, state="open") == {at_hub, at_spoke}
    assert _ids(api, hub=hub, severity="critical") == {at_spoke}
    assert _ids(api, centre=elsewhere, severity="critical") == {far}
    assert _ids(api, hub=hub, clinical=True) == {at_spoke}
    assert _ids(api, hub=hub, clinical=False, state="open") == {at_hub}
    assert _ids(api, hub=hub, state="resolved") == {done}
    assert _ids(api, hub=hub, rule_id="spo2-low", device="ox-1") == {at_spoke}
    clinical = api.client.get(f"/v1/alerts/{at_spoke}", headers=api.headers(Role.VIEWER)).json()
    assert clinical["patient_ref"] == "p-7f3a" and clinical["clinical"] is True


def test_alerts_filter_by_when_they_began(api: Api) -> None:
    centre = api.centre()
    early = insert_alert(api, centre, started_ms=1_600_000_000_000)
    late = insert_alert(api, centre, started_ms=1_800_000_000_000)
    assert _ids(api, centre=centre, since="2025-01-01T00:00:00Z") == {late}
    assert _ids(api, centre=centre, until="2025-01-01T00:00:00Z") == {early}
    page = api.client.get("/v1/alerts", params={"centre": centre}, headers=api.headers()).json()
    assert [a["id"] for a in page["items"]] == [late, early]  # newest first
    assert page["total"] == 2


def _channel(api: Api, **extra: Any) -> int:
    body = {"name": "sms gateway", "url": "http://127.0.0.1:9/hook", **extra}
    answer = api.client.post("/v1/notification-channels", json=body, headers=api.headers())
    assert answer.status_code == 201, answer.text
    channel_id: int = answer.json()["id"]
    return channel_id


def test_acknowledge_then_resolve_write_history_and_tell_the_channels(registry_api: Api) -> None:
    api = registry_api
    centre = api.centre()
    channel = _channel(api, scope={"kind": "centre", "value": centre})
    alert_id = insert_alert(api, centre, notified="firing")
    subject = f"{centre}/pw"
    with sessions(api).begin() as session:
        state = {"phase": "firing", "since": 1, "last": 5, "alert": alert_id, "window": [[1, 2]]}
        session.add(AlertCondition(rule_id="battery-low", subject=subject, state=state))
    tech = api.headers(Role.TECHNICIAN)

    acked = api.client.post(
        f"/v1/alerts/{alert_id}/acknowledge", json={"note": "on my way"}, headers=tech
    )
    assert acked.status_code == 200, acked.text
    body = acked.json()
    assert body["state"] == "acknowledged"
    assert body["acknowledged_by"] == "token:test-technician" and body["ack_note"] == "on my way"
    assert body["acknowledged_at"] is not None
    assert [(e["event"], e["actor"]) for e in body["history"]] == [
        ("acknowledged", "token:test-technician")
    ]
    assert [(d["channel_id"], d["event"], d["status"]) for d in body["deliveries"]] == [
        (channel, "acknowledged", "queued")
    ]
    again = api.client.post(f"/v1/alerts/{alert_id}/acknowledge", headers=tech)
    assert again.status_code == 409

    resolved = api.client.post(
        f"/v1/alerts/{alert_id}/resolve", json={"note": "battery replaced"}, headers=tech
    ).json()
    assert resolved["state"] == "resolved" and resolved["resolved_by"] == "token:test-technician"
    assert resolved["resolved_ms"] is not None
    assert [e["event"] for e in resolved["history"]] == ["acknowledged", "resolved"]
    assert resolved["history"][-1]["detail"] == {"note": "battery replaced"}
    assert [d["event"] for d in resolved["deliveries"]] == ["acknowledged", "resolved"]
    # the engine starts afresh for the subject: no alert kept alive, windows kept
    assert condition_state(api, "battery-low", subject) == {
        "phase": "ok",
        "last": 5,
        "window": [[1, 2]],
    }
    assert api.client.post(f"/v1/alerts/{alert_id}/resolve", headers=tech).status_code == 409
    assert _ids(api, centre=centre, state="open") == set()


def test_a_silenced_alert_is_acknowledged_without_a_notification(api: Api) -> None:
    centre = api.centre()
    _channel(api)
    alert_id = insert_alert(api, centre, silenced=True)
    body = api.client.post(
        f"/v1/alerts/{alert_id}/acknowledge", headers=api.headers(Role.TECHNICIAN)
    ).json()
    assert body["state"] == "acknowledged" and body["deliveries"] == []


def test_a_pending_alert_cannot_be_acknowledged_but_can_be_resolved(api: Api) -> None:
    alert_id = insert_alert(api, api.centre(), state="pending", fired_ms=None)
    tech = api.headers(Role.TECHNICIAN)
    refused = api.client.post(f"/v1/alerts/{alert_id}/acknowledge", headers=tech)
    assert refused.status_code == 409
    assert refused.headers["content-type"] == "application/problem+json"
    assert api.client.post(f"/v1/alerts/{alert_id}/resolve", headers=tech).status_code == 200


@pytest.mark.parametrize("action", ["acknowledge", "resolve"])
def test_viewers_cannot_act_on_alerts(api: Api, action: str) -> None:
    alert_id = insert_alert(api, api.centre())
    answer = api.client.post(f"/v1/alerts/{alert_id}/{action}", headers=api.headers(Role.VIEWER))
    assert answer.status_code == 403
    still = api.client.get(f"/v1/alerts/{alert_id}", headers=api.headers(Role.VIEWER)).json()
    assert still["state"] == "firing" and still["history"] == []


def test_an_unknown_alert_is_a_404(api: Api) -> None:
    missing = unique_id("a")
    assert api.client.get(f"/v1/alerts/{missing}", headers=api.headers()).status_code == 404
    answer = api.client.post(
        f"/v1/alerts/{missing}/acknowledge", headers=api.headers(Role.TECHNICIAN)
    )
    assert answer.status_code == 404


def test_counts_are_open_alerts_per_centre_and_severity(registry_api: Api) -> None:
    api = registry_api
    hub = api.centre()
    spoke = api.centre(hub_id=hub)
    for severity in ("critical", "critical", "warning"):
        insert_alert(api, spoke, severity=severity, clinical=severity == "critical")
    insert_alert(api, hub, severity="info", state="acknowledged")
    insert_alert(api, hub, severity="critical", state="resolved")
    counts = api.client.get(
        "/v1/alerts/counts", params={"hub": hub}, headers=api.headers(Role.VIEWER)
    ).json()
    assert counts["totals"] == {"critical": 2, "warning": 1, "info": 1, "total": 4}
    assert counts["centres"] == [
        {"centre": spoke, "critical": 2, "warning": 1, "info": 0, "total": 3, "clinical": 2},
        {"centre": hub, "critical": 0, "warning": 0, "info": 1, "total": 1, "clinical": 0},
    ]


def test_a_technician_silences_an_alert_and_its_resolution_is_not_notified(api: Api) -> None:
    from datetime import UTC, datetime, timedelta

    centre = api.centre()
    _channel(api)
    alert_id = insert_alert(api, centre, device="pw-1", notified="firing")
    tech = api.headers(Role.TECHNICIAN)
    until = (datetime.now(UTC) + timedelta(hours=2)).isoformat()
    created = api.client.post(
        f"/v1/alerts/{alert_id}/silence", json={"ends_at": until, "comment": "fixing"}, headers=tech
    )
    assert created.status_code == 201, created.text
    silence = created.json()
    assert (silence["centre"], silence["device"], silence["rule_id"]) == (
        centre,
        "pw-1",
        "battery-low",
    )
    assert silence["active"] is True
    resolved = api.client.post(f"/v1/alerts/{alert_id}/resolve", headers=tech).json()
    assert [e["event"] for e in resolved["history"]] == ["silenced", "resolved"]
    assert resolved["deliveries"] == []
    viewer = api.client.post(
        f"/v1/alerts/{alert_id}/silence", json={"ends_at": until}, headers=api.headers(Role.VIEWER)
    )
    assert viewer.status_code == 403
