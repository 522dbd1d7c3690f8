"""``/v1/alert-rules``: the rule life cycle, audited; invalid rules are 422s naming the field."""

from __future__ import annotations

from typing import Any

import pytest

from api.schemas import Role
from tests.api.alert_helpers import BATTERY_LOW, audit_of, condition_state, insert_alert, sessions
from tests.api.conftest import Api
from tests.factories import unique_id

PROBLEM = "application/problem+json"


def _create(api: Api, body: dict[str, Any]) -> dict[str, Any]:
    answer = api.client.post("/v1/alert-rules", json=body, headers=api.headers())
    assert answer.status_code == 201, answer.text
    created: dict[str, Any] = answer.json()
    return created


def test_a_rule_is_created_read_changed_and_deleted_with_every_change_audited(
    registry_api: Api,
) -> None:
    api, headers = registry_api, registry_api.headers()
    rule = _create(api, BATTERY_LOW)
    rule_id = rule["id"]
    assert rule_id.startswith("battery-low-") and rule["version"] == 1
    assert rule["condition"]["for"] == 600 and rule["clinical"] is False
    assert (
        api.client.get(f"/v1/alert-rules/{rule_id}", headers=api.headers(Role.VIEWER)).json()
        == rule
    )

    replaced = {**BATTERY_LOW, "condition": {**BATTERY_LOW["condition"], "value": 15}}
    put = api.client.put(f"/v1/alert-rules/{rule_id}", json=replaced, headers=headers)
    assert put.status_code == 200, put.text
    assert put.json()["condition"]["value"] == 15 and put.json()["version"] == 2
    patched = api.client.patch(
        f"/v1/alert-rules/{rule_id}", json={"severity": "critical"}, headers=headers
    ).json()
    assert patched["severity"] == "critical" and patched["condition"]["value"] == 15
    assert patched["version"] == 3
    disabled = api.client.post(f"/v1/alert-rules/{rule_id}/disable", headers=headers).json()
    assert disabled["enabled"] is False and disabled["version"] == 4
    listed = api.client.get(
        "/v1/alert-rules", params={"enabled": False, "severity": "critical"}, headers=headers
    ).json()
    assert rule_id in [r["id"] for r in listed["items"]]
    enabled = api.client.post(f"/v1/alert-rules/{rule_id}/enable", headers=headers).json()
    assert enabled["enabled"] is True
    assert api.client.delete(f"/v1/alert-rules/{rule_id}", headers=headers).status_code == 204
    assert api.client.get(f"/v1/alert-rules/{rule_id}", headers=headers).status_code == 404

    entries = audit_of(api, rule_id)
    assert [e.action for e in entries] == [
        "alert_rule.create",
        "alert_rule.update",
        "alert_rule.update",
        "alert_rule.disable",
        "alert_rule.enable",
        "alert_rule.delete",
    ]
    assert all(e.actor == "token:test-admin" and e.entity == "alert_rule" for e in entries)
    assert entries[0].before is None and entries[-1].after is None
    assert entries[1].before["spec"]["condition"]["value"] == 20
    assert entries[1].after["spec"]["condition"]["value"] == 15
    assert entries[3].after["spec"]["enabled"] is False


def test_a_client_given_id_is_kept_and_taken_once(api: Api) -> None:
    rule_id = unique_id("r")
    assert _create(api, {**BATTERY_LOW, "id": rule_id})["id"] == rule_id
    again = api.client.post(
        "/v1/alert-rules", json={**BATTERY_LOW, "id": rule_id}, headers=api.headers()
    )
    assert again.status_code == 409
    bad = api.client.post(
        "/v1/alert-rules", json={**BATTERY_LOW, "id": "Not An Id"}, headers=api.headers()
    )
    assert bad.status_code == 422
    assert [e["field"] for e in bad.json()["errors"]] == ["body.id"]


def _threshold(**change: Any) -> dict[str, Any]:
    return {**BATTERY_LOW, "condition": {**BATTERY_LOW["condition"], **change}}


SPO2 = {"metric": "spo2_pct", "op": "<", "value": 90}


@pytest.mark.parametrize(
    ("body", "field", "says"),
    [
        (_threshold(kind="router"), "body.condition.metric", "not a metric of router"),
        (_threshold(unit="V"), "body.condition.unit", "is in %"),
        (_threshold(value=120), "body.condition.value", "outside what battery_soc_pct can be"),
        (_threshold(clears=15), "body.condition.clears", "hysteresis"),
        (_threshold(**{"for": "10 fortnights"}), "body.condition.for", "unit must be"),
        (_threshold(**{"for": "90d"}), "body.condition.for", "less than or equal"),
        (
            {"name": "c", "condition": {"type": "clinical", "kind": "power", "any": [SPO2]}},
            "body.condition.kind",
            "clinical rules are for health devices",
        ),
        (
            {
                "name": "c",
                "condition": {
                    "type": "clinical",
                    "kind": "pulse_oximeter",
                    "any": [SPO2, {"metric": "spo2_pct", "op": "<", "value": 190}],
                },
            },
            "body.condition.any.1.value",
            "190 is outside",
        ),
        ({**BATTERY_LOW, "scope": {"kind": "centre"}}, "body.scope.value", "needs one"),
        ({**BATTERY_LOW, "severity": "dire"}, "body.severity", "info"),
    ],
    ids=[
        "metric-not-of-kind",
        "unit",
        "impossible-threshold",
        "hysteresis",
        "duration-unit",
        "duration-too-long",
        "clinical-on-power",
        "clinical-bound",
        "scope-value",
        "severity",
    ],
)
def test_an_invalid_rule_is_a_422_naming_the_field(
    api: Api, body: dict[str, Any], field: str, says: str
) -> None:
    answer = api.client.post("/v1/alert-rules", json=body, headers=api.headers())
    assert answer.status_code == 422
    assert answer.headers["content-type"] == PROBLEM
    errors = answer.json()["errors"]
    assert [e["field"] for e in errors] == [field], errors
    assert says in errors[0]["message"]
    assert field in answer.json()["detail"]


def test_a_patch_is_checked_as_a_whole_and_names_the_field(api: Api) -> None:
    rule_id = _create(api, BATTERY_LOW)["id"]
    answer = api.client.patch(
        f"/v1/alert-rules/{rule_id}",
        json={"condition": {**BATTERY_LOW["condition"], "metric": "wan_latency_ms"}},
        headers=api.headers(),
    )
    assert answer.status_code == 422
    assert [e["field"] for e in answer.json()["errors"]] == ["body.condition.metric"]
    assert (
        api.client.get(f"/v1/alert-rules/{rule_id}", headers=api.headers()).json()["version"] == 1
    )


def test_rules_filter_by_condition_type_and_clinical(api: Api) -> None:
    clinical = _create(
        api,
        {
            "name": "SpO2",
            "severity": "critical",
            "condition": {"type": "clinical", "kind": "pulse_oximeter", "any": [SPO2]},
        },
    )["id"]
    threshold = _create(api, BATTERY_LOW)["id"]
    headers = api.headers(Role.VIEWER)
    only_clinical = api.client.get("/v1/alert-rules", params={"clinical": True}, headers=headers)
    ids = [r["id"] for r in only_clinical.json()["items"]]
    assert clinical in ids and threshold not in ids
    thresholds = api.client.get(
        "/v1/alert-rules", params={"condition_type": "threshold"}, headers=headers
    ).json()
    ids = [r["id"] for r in thresholds["items"]]
    assert threshold in ids and clinical not in ids
    assert all(r["condition"]["type"] == "threshold" for r in thresholds["items"])


def test_viewers_and_technicians_read_rules_but_only_admins_change_them(api: Api) -> None:
    rule_id = _create(api, BATTERY_LOW)["id"]
    for role in (Role.VIEWER, Role.TECHNICIAN):
        headers = api.headers(role)
        assert api.client.get(f"/v1/alert-rules/{rule_id}", headers=headers).status_code == 200
        tried = [
            api.client.post("/v1/alert-rules", json=BATTERY_LOW, headers=headers),
            api.client.patch(f"/v1/alert-rules/{rule_id}", json={"name": "x"}, headers=headers),
            api.client.post(f"/v1/alert-rules/{rule_id}/disable", headers=headers),
            api.client.delete(f"/v1/alert-rules/{rule_id}", headers=headers),
        ]
        assert [t.status_code for t in tried] == [403] * 4
        assert tried[0].headers["content-type"] == PROBLEM


def test_disabling_a_rule_resolves_its_open_alerts_and_forgets_its_engine_state(api: Api) -> None:
    from api.db.models import AlertCondition

    rule_id = _create(api, BATTERY_LOW)["id"]
    centre = api.centre()
    alert_id = insert_alert(api, centre, rule_id=rule_id)
    with sessions(api).begin() as session:
        session.add(
            AlertCondition(rule_id=rule_id, subject=f"{centre}/pw", state={"phase": "firing"})
        )
    api.client.post(f"/v1/alert-rules/{rule_id}/disable", headers=api.headers())
    alert = api.client.get(f"/v1/alerts/{alert_id}", headers=api.headers()).json()
    assert alert["state"] == "resolved" and alert["resolved_by"] == "token:test-admin"
    assert alert["history"][-1]["detail"] == {"reason": "rule disabled"}
    assert condition_state(api, rule_id, f"{centre}/pw") is None
