"""What people do to an alert: acknowledge it, resolve it by hand, silence it.

Both write the alert's history (``AlertEvent``, actor = the token's label) and
tell the channels that were told of the alert (:func:`api.alerts.channels.enqueue`),
in the request's transaction. A silenced or inhibited alert was never notified,
so its acknowledgement or resolution is not either; nor is one that a silence
in force now matches.

Resolving by hand also resets the engine's state of the rule for that subject
(``AlertCondition``: phase ``ok``), so the engine does not keep the alert alive:
if the trouble is still there, the next reading starts a new alert, after the
rule's duration as any other. An absence rule's timer restarts from now.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from alerting.rules import Place
from api.alert_schemas import AlertSilence, SilenceCreate
from api.alerts.channels import enqueue
from api.db.models import (
    Alert,
    AlertCondition,
    AlertEvent,
    AlertRule,
    Centre,
    Device,
    Silence,
)
from api.errors import Conflict, NotFound
from api.services.alert_silences import create as create_silence
from api.services.alert_silences import silencing

OPEN = ("pending", "firing", "acknowledged")
# engine state kept across a reset (the windows rate and forecast rules need)
_KEPT = ("window", "gap", "resolved", "last")


def get(session: Session, alert_id: str) -> Alert:
    alert = session.get(Alert, alert_id)
    if alert is None:
        raise NotFound(f"alert {alert_id} not found")
    return alert


def place_of(session: Session, alert: Alert) -> Place:
    """Where the alert's subject is, as channel scopes match it."""
    centre = session.get(Centre, alert.centre)
    kind = None
    if alert.device is not None:
        device = session.get(Device, alert.device)
        kind = device.kind if device is not None else None
    return Place(
        centre=alert.centre,
        device=alert.device,
        kind=kind,
        hub=centre.hub_id if centre else None,
        district=centre.district if centre else None,
        state=centre.state if centre else None,
    )


def _notify(session: Session, alert: Alert, event: str) -> None:
    if alert.notified is None or alert.silenced or alert.inhibited:
        return
    if silencing(session, alert) is not None:
        return
    enqueue(session, alert, event, place_of(session, alert))


def acknowledge(session: Session, actor: str, alert_id: str, note: str | None) -> Alert:
    alert = get(session, alert_id)
    if alert.state != "firing":
        raise Conflict(f"alert {alert_id} is {alert.state}: only a firing alert is acknowledged")
    now = datetime.now(UTC)
    alert.state = "acknowledged"
    alert.acknowledged_by = actor
    alert.acknowledged_at = now
    alert.ack_note = note
    alert.updated_at = now
    session.add(
        AlertEvent(
            alert_id=alert.id,
            at=now,
            event="acknowledged",
            actor=actor,
            detail={"note": note} if note else None,
        )
    )
    _notify(session, alert, "acknowledged")
    session.flush()
    return alert


def resolve(session: Session, actor: str, alert_id: str, note: str | None) -> Alert:
    alert = get(session, alert_id)
    if alert.state not in OPEN:
        raise Conflict(f"alert {alert_id} is resolved already")
    close(session, alert, actor, {"note": note} if note else None)
    session.flush()
    return alert


def close(session: Session, alert: Alert, actor: str, detail: dict[str, object] | None) -> None:
    """Resolve an open alert now (by hand, or its rule went away) and reset the engine's state."""
    now = datetime.now(UTC)
    now_ms = int(time.time() * 1000)
    was_firing = alert.state in ("firing", "acknowledged")
    alert.state = "resolved"
    alert.resolved_by = actor
    alert.resolved_ms = now_ms
    alert.updated_at = now
    session.add(AlertEvent(alert_id=alert.id, at=now, event="resolved", actor=actor, detail=detail))
    reset_condition(session, alert.rule_id, alert.subject, now_ms)
    if was_firing:
        _notify(session, alert, "resolved")


def reset_condition(session: Session, rule_id: str, subject: str, now_ms: int) -> None:
    """The engine's state for rule+subject back to phase ``ok`` (windows kept)."""
    row = session.get(AlertCondition, (rule_id, subject))
    if row is None:
        return
    state = {k: v for k, v in (row.state or {}).items() if k in _KEPT}
    state["phase"] = "ok"
    rule = session.get(AlertRule, rule_id)
    if rule is not None and rule.spec.get("condition", {}).get("type") == "absence":
        state["last"] = max(int(state.get("last") or 0), now_ms)  # the timer restarts now
    row.state = state


def close_rule(session: Session, actor: str, rule_id: str, reason: str) -> int:
    """Resolve every open alert of a rule (deleted or disabled); drop its engine state."""
    alerts = session.scalars(select(Alert).where(Alert.rule_id == rule_id, Alert.state.in_(OPEN)))
    count = 0
    for alert in alerts:
        close(session, alert, actor, {"reason": reason})
        count += 1
    for condition in session.scalars(
        select(AlertCondition).where(AlertCondition.rule_id == rule_id)
    ):
        session.delete(condition)
    return count


def silence(session: Session, actor: str, alert_id: str, body: AlertSilence) -> Silence:
    """A silence of this alert's rule at its centre (and device) until ``body.ends_at``."""
    alert = get(session, alert_id)
    spec = SilenceCreate(
        centre=alert.centre,
        device=alert.device,
        rule_id=alert.rule_id,
        ends_at=body.ends_at,
        comment=body.comment,
    )
    row = create_silence(session, actor, spec)
    session.add(
        AlertEvent(
            alert_id=alert.id,
            at=datetime.now(UTC),
            event="silenced",
            actor=actor,
            detail={"silence": row.id, "until": row.ends_at.isoformat()},
        )
    )
    session.flush()
    return row
