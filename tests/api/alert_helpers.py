"""Alert rows inserted straight into the registry (the engine writes them in production)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from api.db.models import Alert, AlertCondition, AuditEntry
from tests.api.conftest import Api
from tests.factories import unique_id

BATTERY_LOW: dict[str, Any] = {
    "name": "Battery low",
    "severity": "warning",
    "condition": {
        "type": "threshold",
        "kind": "power",
        "metric": "battery_soc_pct",
        "op": "<",
        "value": 20,
        "for": "10m",
        "clears": 25,
    },
}


def insert_alert(api: Api, centre: str, **extra: Any) -> str:
    """An alert of ``centre`` (firing, warning, not clinical unless ``extra`` says)."""
    alert_id = unique_id("a")
    device = extra.pop("device", None)
    rule_id = extra.pop("rule_id", "battery-low")
    row = {
        "id": alert_id,
        "rule_id": rule_id,
        "rule_name": "Battery low",
        "subject": f"{centre}/{device or 'pw'}",
        "centre": centre,
        "device": device,
        "severity": "warning",
        "clinical": False,
        "state": "firing",
        "started_ms": 1_700_000_000_000,
        "fired_ms": 1_700_000_600_000,
        "last_seen_ms": 1_700_000_600_000,
        "count": 3,
        "value": 18.5,
        "detail": {},
        "during_outage": False,
        "inhibited": False,
        "silenced": False,
        **extra,
    }
    with sessions(api).begin() as session:
        session.add(Alert(**row))
    return alert_id


def sessions(api: Api) -> Any:
    return api.client.app.state.components.sessions  # type: ignore[attr-defined]


def condition_state(api: Api, rule_id: str, subject: str) -> dict[str, Any] | None:
    with sessions(api)() as session:
        row = session.get(AlertCondition, (rule_id, subject))
        return None if row is None else dict(row.state)


def audit_of(api: Api, entity_id: str) -> list[AuditEntry]:
    with sessions(api)() as session:
        query = select(AuditEntry).where(AuditEntry.entity_id == entity_id).order_by(AuditEntry.id)
        return list(session.scalars(query))
