"""Which channels hear of an alert event, and the queued notifications for them.

:func:`enqueue` runs in the engine's transaction (the one that records the
alert's change), so an event is queued exactly when it is recorded. The
webhook worker delivers what is queued; ``Notification.id`` is the delivery id.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from alerting.rules import SEVERITY_RANK, Place, Scope, ScopeKind, Severity
from api.db.models import Alert, Notification, NotificationChannel

# What an event tells the receiver; "episode": began and ended while the centre was offline.
EVENTS = ("firing", "resolved", "episode", "acknowledged")


def channel_hears(channel: NotificationChannel, severity: str, place: Place) -> bool:
    if not channel.enabled:
        return False
    if SEVERITY_RANK[Severity(severity)] < SEVERITY_RANK[Severity(channel.min_severity)]:
        return False
    scope = Scope(kind=ScopeKind(channel.scope_kind), value=channel.scope_value)
    return scope.matches(place)


def alert_body(alert: Alert, event: str) -> dict[str, Any]:
    """The JSON a receiver gets: the alert as it stands, and what happened to it."""
    return {
        "event": event,
        "alert": {
            "id": alert.id,
            "rule_id": alert.rule_id,
            "rule": alert.rule_name,
            "severity": alert.severity,
            "clinical": alert.clinical,
            "state": alert.state,
            "centre": alert.centre,
            "device": alert.device,
            "subject": alert.subject,
            "started_ms": alert.started_ms,
            "resolved_ms": alert.resolved_ms,
            "last_seen_ms": alert.last_seen_ms,
            "count": alert.count,
            "value": alert.value,
            "detail": alert.detail,
            "patient_ref": alert.patient_ref,  # a pseudonym, never a raw patient id
            "during_outage": alert.during_outage,
            "edge_raised_ms": alert.edge_raised_ms,
        },
    }


def all_channels(session: Session) -> Sequence[NotificationChannel]:
    return session.scalars(select(NotificationChannel)).all()


def enqueue(
    session: Session,
    alert: Alert,
    event: str,
    place: Place,
    channels: Sequence[NotificationChannel] | None = None,
) -> list[str]:
    """Queue ``event`` of ``alert`` for every channel that hears it; the delivery ids.

    ``channels``: every channel, read in this transaction (:func:`all_channels`; read
    here when not given): the engine reads them once per round, not once per event.
    """
    assert event in EVENTS, event
    if channels is None:
        channels = all_channels(session)
    ids = []
    body = alert_body(alert, event)
    for channel in channels:
        if not channel_hears(channel, alert.severity, place):
            continue
        delivery = uuid.uuid4().hex
        session.add(
            Notification(
                id=delivery,
                alert_id=alert.id,
                channel_id=channel.id,
                event=event,
                clinical=alert.clinical,
                body={**body, "delivery_id": delivery},
                status="queued",
                attempts=0,
            )
        )
        ids.append(delivery)
    alert.notified = event
    return ids
