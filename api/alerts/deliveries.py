"""The notification queue in the registry database: what is due, claims, results.

Several workers (the API's and a separate ``gramlink alerts``) may share one
database. A worker *claims* a due notification by moving its ``next_try_at``
to the end of a lease, on the condition that it still holds the value the
worker read (``UPDATE ... WHERE id = ? AND next_try_at = ?``, rowcount 1):
of two workers only one wins, on SQLite and PostgreSQL alike. While leased a
notification is not due, so nobody else sends it; a worker that dies leaves a
lease that runs out, and the notification is sent again (the receiver
de-duplicates on the delivery id). The result of a try is written only while
the lease is still the worker's own.

Every transaction here starts with its write (claims, results) or only reads
(the due list), so a SQLite reader never has to upgrade a stale snapshot.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, cast

from sqlalchemy import CursorResult, func, select, update
from sqlalchemy.orm import Session

from api.db.models import DeliveryAttempt, Notification, NotificationChannel

WAITING = ("queued", "failed")
Status = Literal["queued", "delivered", "failed"]


@dataclass(frozen=True)
class Job:
    """One claimed notification, everything a sender needs."""

    id: str
    channel_id: int
    url: str
    secret: str
    body: dict[str, Any]
    event: str
    clinical: bool
    attempts: int  # tries before this one
    status: str
    created_at: datetime
    due: datetime  # next_try_at as read: restored if the job is handed back unsent
    lease: datetime  # next_try_at while claimed


@dataclass(frozen=True)
class Result:
    """How one try ended, and what becomes of the notification."""

    started: datetime
    duration_ms: float
    status_code: int | None
    error: str | None
    status: Status
    next_try_at: datetime | None  # None when delivered


def aware(value: datetime) -> datetime:
    """SQLite hands back naive datetimes; every time stored here is UTC."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def due(session: Session, now: datetime, limit: int) -> list[tuple[Notification, str, str]]:
    """Due notifications of enabled channels: clinical first, then the longest waiting.

    A disabled channel's notifications wait, queued, until it is enabled again.
    """
    rows = session.execute(
        select(Notification, NotificationChannel.url, NotificationChannel.secret)
        .join(NotificationChannel, NotificationChannel.id == Notification.channel_id)
        .where(
            Notification.status.in_(WAITING),
            Notification.next_try_at <= now,
            NotificationChannel.enabled.is_(True),
        )
        .order_by(Notification.clinical.desc(), Notification.next_try_at, Notification.created_at)
        .limit(limit)
    ).all()
    return [(row[0], row[1], row[2]) for row in rows]


def claim(session: Session, notification: Notification, lease: datetime) -> bool:
    """Take ``notification`` until ``lease``; False when another worker was first."""
    result = session.execute(
        update(Notification)
        .where(
            Notification.id == notification.id,
            Notification.next_try_at == notification.next_try_at,
            Notification.status.in_(WAITING),
        )
        .values(next_try_at=lease)
        .execution_options(synchronize_session=False)
    )
    return cast(CursorResult[Any], result).rowcount == 1


def release(session: Session, job: Job) -> None:
    """Hand an unsent job back: due again as it was (when the worker stops)."""
    session.execute(
        update(Notification)
        .where(Notification.id == job.id, Notification.next_try_at == job.lease)
        .values(next_try_at=job.due)
        .execution_options(synchronize_session=False)
    )


def record(session: Session, job: Job, result: Result, now: datetime) -> bool:
    """Log the try and move the notification on; False if the lease was lost first.

    A delivery is recorded even after a lost lease (it did reach the receiver);
    a failure then is only logged, the worker holding the lease decides.
    """
    session.add(
        DeliveryAttempt(
            notification_id=job.id,
            at=result.started,
            status_code=result.status_code,
            error=result.error,
            duration_ms=result.duration_ms,
        )
    )
    session.flush()
    values: dict[str, Any] = {
        "attempts": Notification.attempts + 1,
        "last_status_code": result.status_code,
        "last_error": result.error,
        "status": result.status,
    }
    statement = update(Notification).where(
        Notification.id == job.id, Notification.status != "delivered"
    )
    if result.status == "delivered":
        values["delivered_at"] = now
    else:
        values["next_try_at"] = result.next_try_at
        statement = statement.where(Notification.next_try_at == job.lease)
    done = session.execute(statement.values(**values).execution_options(synchronize_session=False))
    return cast(CursorResult[Any], done).rowcount == 1


@dataclass(frozen=True)
class Backlog:
    queued: int
    failed: int
    oldest: datetime | None


def backlog(session: Session) -> Backlog:
    """What is not delivered yet (for the gauges)."""
    counts = {"queued": 0, "failed": 0}
    oldest: datetime | None = None
    rows = session.execute(
        select(Notification.status, func.count(), func.min(Notification.created_at))
        .where(Notification.status.in_(WAITING))
        .group_by(Notification.status)
    ).all()
    for status, count, first in rows:
        counts[status] = count
        if first is not None:
            first = aware(first)
            oldest = first if oldest is None else min(oldest, first)
    return Backlog(counts["queued"], counts["failed"], oldest)
