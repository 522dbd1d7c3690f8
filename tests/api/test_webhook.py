"""Webhook delivery against a real HTTP receiver on 127.0.0.1 and a real registry DB.

Small backoff settings; every wait is on a condition (the receiver's log, a row).
"""

from __future__ import annotations

import itertools
import json
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from alerting.rules import Place
from api.alerts import deliveries, signing
from api.alerts.channels import enqueue
from api.alerts.webhook import DeliveryOptions, WebhookWorker
from api.db.models import Alert, DeliveryAttempt, Notification, NotificationChannel
from api.db.session import make_engine, migrate, session_factory
from tests.api.conftest import Api, Postgres
from tests.api.webhook_receiver import Received, Receiver
from tests.factories import unique_id, wait_for

FAST = DeliveryOptions(
    concurrency=2,
    timeout_s=2.0,
    backoff_min_s=0.05,
    backoff_max_s=0.3,
    failed_after=3,
    poll_s=0.05,
)

Sessions = sessionmaker[Session]


def _database(url: str) -> Iterator[Sessions]:
    engine = make_engine(url)
    migrate(engine)
    yield session_factory(engine)
    engine.dispose()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / unique_id('notify')}.sqlite"


@pytest.fixture
def db(sqlite_url: str) -> Iterator[Sessions]:
    yield from _database(sqlite_url)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, sqlite_url: str) -> str:
    if request.param == "sqlite":
        return sqlite_url
    pg: Postgres = request.getfixturevalue("postgres")
    return pg.url(pg.create_database())


@pytest.fixture
def both_db(db_url: str) -> Iterator[Sessions]:
    """The registry on SQLite and on PostgreSQL."""
    yield from _database(db_url)


def add_channel(sessions: Sessions, url: str, secret: str, centre: str | None = None) -> int:
    scope = {"scope_kind": "centre", "scope_value": centre} if centre else {}
    with sessions.begin() as session:
        channel = NotificationChannel(name="hook", url=url, secret=secret, **scope)
        session.add(channel)
        session.flush()
        return channel.id


def queue_alert(sessions: Sessions, *, clinical: bool = False, centre: str | None = None) -> str:
    """An alert recorded and queued as the engine does it; its (only) delivery id."""
    centre = centre or unique_id("c")
    with sessions.begin() as session:
        alert = Alert(
            id=unique_id("a"),
            rule_id="spo2-low" if clinical else "battery-low",
            rule_name="SpO2 below 90 %" if clinical else "battery below 20 %",
            subject=f"{centre}/dev",
            centre=centre,
            device="dev",
            severity="critical" if clinical else "warning",
            clinical=clinical,
            state="firing",
            started_ms=1_700_000_000_000,
            last_seen_ms=1_700_000_000_000,
            value=85.0 if clinical else 18.0,
            patient_ref="p-7f3a" if clinical else None,
        )
        session.add(alert)
        place = Place(centre, "dev", "pulse_oximeter", None, "d1", "s1")
        (delivery,) = enqueue(session, alert, "firing", place)
        return delivery


def notification(sessions: Sessions, delivery: str) -> Notification:
    with sessions() as session:
        row = session.get(Notification, delivery)
        assert row is not None
        return row


def attempts(sessions: Sessions, delivery: str) -> list[DeliveryAttempt]:
    with sessions() as session:
        return list(
            session.scalars(
                select(DeliveryAttempt)
                .where(DeliveryAttempt.notification_id == delivery)
                .order_by(DeliveryAttempt.id)
            )
        )


@contextmanager
def running(
    sessions: Sessions,
    options: DeliveryOptions = FAST,
    registry: CollectorRegistry | None = None,
    name: str = "webhook",
) -> Iterator[WebhookWorker]:
    worker = WebhookWorker(sessions, options, registry=registry, name=name)
    worker.start()
    try:
        yield worker
    finally:
        worker.close()


def status_is(sessions: Sessions, delivery: str, status: str) -> Callable[[], bool]:
    return lambda: notification(sessions, delivery).status == status


def failing_then_ok(failures: int, code: int = 500) -> Callable[[Received, int], int]:
    return lambda _request, tries: code if tries <= failures else 200


def test_a_receiver_failing_twice_gets_the_signed_notification_on_the_third_try(
    both_db: Sessions,
) -> None:
    db = both_db
    secret = secrets.token_hex(16)
    registry = CollectorRegistry()
    with Receiver(secret, failing_then_ok(2)) as receiver:
        add_channel(db, receiver.url, secret)
        delivery = queue_alert(db)
        sample = registry.get_sample_value
        with running(db, registry=registry):
            wait_for(status_is(db, delivery, "delivered"), 15, "the third try to deliver")
            wait_for(
                lambda: sample("gramlink_notify_delivered_total", {"clinical": "false"}) == 1,
                5,
                "the delivered counter",
            )
            assert sample("gramlink_notify_attempts_total", {"outcome": "http_error"}) == 2
            assert sample("gramlink_notify_attempts_total", {"outcome": "delivered"}) == 1
        requests = list(receiver.received)

    assert [r.delivery for r in requests] == [delivery] * 3
    assert all(r.verified for r in requests), "signature (channel secret) must verify"
    assert not signing.verify(
        "not-the-secret",
        requests[-1].headers[signing.TIMESTAMP_HEADER.lower()],
        requests[-1].headers[signing.SIGNATURE_HEADER.lower()],
        requests[-1].body,
        now=time.time(),
    )
    assert all(r.headers["content-type"] == "application/json" for r in requests)
    body = json.loads(requests[-1].body)
    assert body["delivery_id"] == delivery
    assert body["event"] == "firing"
    assert body["alert"]["rule"] == "battery below 20 %"
    row = notification(db, delivery)
    assert (row.attempts, row.last_status_code, row.delivered_at is not None) == (3, 200, True)
    log = attempts(db, delivery)
    assert [a.status_code for a in log] == [500, 500, 200]
    assert all(a.duration_ms >= 0 for a in log)
    assert log[0].error and log[0].error.startswith("HTTP 500")


def test_a_delivery_that_keeps_failing_is_failed_and_still_retried(db: Sessions) -> None:
    secret = secrets.token_hex(16)
    healthy = threading.Event()
    registry = CollectorRegistry()

    def answer(_request: Received, _tries: int) -> int:
        return 200 if healthy.is_set() else 503

    with Receiver(secret, answer) as receiver:
        add_channel(db, receiver.url, secret)
        delivery = queue_alert(db)
        with running(db, registry=registry):
            wait_for(status_is(db, delivery, "failed"), 15, "the notification to turn failed")
            assert notification(db, delivery).attempts >= FAST.failed_after
            failed_at = receiver.count()
            wait_for(lambda: receiver.count() >= failed_at + 2, 15, "retries after failing")
            row = notification(db, delivery)
            assert row.status == "failed"  # still visible as failed while retried
            assert row.last_status_code == 503
            wait_for(
                lambda: registry.get_sample_value("gramlink_notify_failed_total") == 1,
                5,
                "the failed counter",
            )
            healthy.set()
            wait_for(status_is(db, delivery, "delivered"), 15, "delivery once the receiver is back")
    log = attempts(db, delivery)
    assert [a.status_code for a in log[:-1]] == [503] * (len(log) - 1)
    assert log[-1].status_code == 200
    # once failed, retried every 0.15-0.3 s: the cap, jittered
    gaps = [(b.at - a.at).total_seconds() for a, b in itertools.pairwise(log)]
    assert all(gap >= FAST.backoff_max_s / 2 for gap in gaps[FAST.failed_after - 1 :])
    assert set(receiver.deliveries()) == {delivery}


def test_a_refusing_receiver_fails_the_notification_at_once_but_not_a_busy_one(
    db: Sessions,
) -> None:
    """400: the request is wrong, failed on the first try (still retried); 429: retried."""
    secret = secrets.token_hex(16)
    slow_cap = DeliveryOptions(
        concurrency=2, timeout_s=2, backoff_min_s=0.05, backoff_max_s=2.0, failed_after=5
    )
    with (
        Receiver(secret, lambda _request, _tries: 400) as refusing,
        Receiver(secret, failing_then_ok(1, 429)) as busy,
    ):
        add_channel(db, refusing.url, secret, centre="c-refusing")
        add_channel(db, busy.url, secret, centre="c-busy")
        refused = queue_alert(db, centre="c-refusing")
        retried = queue_alert(db, centre="c-busy")
        with running(db, slow_cap):
            wait_for(status_is(db, refused, "failed"), 10, "the refused one to fail")
            row = notification(db, refused)
            assert (row.attempts, row.last_status_code) == (1, 400)
            wait_for(status_is(db, retried, "delivered"), 10, "the busy one after a 429")
            wait_for(lambda: refusing.count() >= 2, 10, "a retry of the refused one")
    assert [a.status_code for a in attempts(db, refused)][:2] == [400, 400]
    assert notification(db, refused).status == "failed"
    assert [a.status_code for a in attempts(db, retried)] == [429, 200]


def test_a_channel_url_that_cannot_be_requested_fails_at_once(db: Sessions) -> None:
    add_channel(db, "ftp://127.0.0.1/hook", "s" * 32)
    delivery = queue_alert(db)
    with running(db):
        wait_for(status_is(db, delivery, "failed"), 10, "the notification to fail")
    (first, *_) = attempts(db, delivery)
    assert first.status_code is None
    assert first.error and first.error.startswith("bad URL")


def test_a_notification_claimed_by_a_worker_that_died_is_sent_when_its_lease_runs_out(
    db: Sessions,
) -> None:
    secret = secrets.token_hex(16)
    with Receiver(secret) as receiver:
        add_channel(db, receiver.url, secret)
        delivery = queue_alert(db)
        lease = datetime.now(UTC) + timedelta(seconds=1)
        with db.begin() as session:  # a worker claims it, then is killed before sending
            row = session.get(Notification, delivery)
            assert row is not None
            assert deliveries.claim(session, row, lease)
        with running(db):
            wait_for(status_is(db, delivery, "delivered"), 10, "delivery after the lease")
    delivered_at = notification(db, delivery).delivered_at
    assert delivered_at is not None
    assert deliveries.aware(delivered_at) >= lease  # not before the dead worker's lease ran out
    assert receiver.deliveries() == [delivery]


def test_a_clinical_alert_goes_out_before_fifty_queued_earlier(db: Sessions) -> None:
    secret = secrets.token_hex(16)
    with Receiver(secret) as receiver:
        add_channel(db, receiver.url, secret)
        others = [queue_alert(db) for _ in range(50)]
        clinical = queue_alert(db, clinical=True)
        one_at_a_time = DeliveryOptions(
            concurrency=1, timeout_s=2, backoff_min_s=0.05, backoff_max_s=0.3, poll_s=0.05
        )
        with running(db, one_at_a_time):
            wait_for(lambda: receiver.count() == 51, 30, "all 51 notifications")
    order = receiver.deliveries()
    assert order[0] == clinical
    assert sorted(order[1:]) == sorted(others)
    first = json.loads(receiver.received[0].body)["alert"]
    assert (first["clinical"], first["patient_ref"], first["value"]) == (True, "p-7f3a", 85.0)


def test_a_clinical_alert_is_not_held_up_by_slow_receivers(db: Sessions) -> None:
    """Every ordinary slot is held by a receiver that does not answer: one is kept for
    clinical notifications."""
    secret = secrets.token_hex(16)
    hold = threading.Event()

    def answer(request: Received, _tries: int) -> int:
        if not json.loads(request.body)["alert"]["clinical"]:
            hold.wait(20)
        return 200

    options = DeliveryOptions(
        concurrency=3, timeout_s=30, backoff_min_s=0.05, backoff_max_s=0.3, poll_s=5.0
    )
    with Receiver(secret, answer) as receiver:
        add_channel(db, receiver.url, secret)
        for _ in range(10):
            queue_alert(db)
        with running(db, options) as worker:
            worker.wake()
            wait_for(lambda: sum(receiver.in_progress.values()) == 2, 10, "2 held requests")
            clinical = queue_alert(db, clinical=True)
            worker.wake()
            wait_for(status_is(db, clinical, "delivered"), 10, "the clinical delivery")
            assert sum(receiver.in_progress.values()) == 2  # the others still held
            hold.set()
            wait_for(lambda: receiver.count() == 11, 20, "the held ones")


def test_a_receiver_that_does_not_answer_in_time_is_retried(db: Sessions) -> None:
    secret = secrets.token_hex(16)
    answered = threading.Event()

    def answer(_request: Received, tries: int) -> int:
        if tries == 1:
            answered.wait(5)  # far past the 0.3 s timeout
        return 200

    options = DeliveryOptions(
        concurrency=1, timeout_s=0.3, backoff_min_s=0.05, backoff_max_s=0.3, poll_s=0.05
    )
    with Receiver(secret, answer) as receiver:
        add_channel(db, receiver.url, secret)
        delivery = queue_alert(db)
        with running(db, options):
            wait_for(status_is(db, delivery, "delivered"), 15, "delivery after a timeout")
        answered.set()
    log = attempts(db, delivery)
    assert [(a.status_code, (a.error or "")[:7]) for a in log] == [(None, "timeout"), (200, "")]
    assert receiver.tries[delivery] == 2


def delivered(registry: CollectorRegistry) -> float:
    return sum(
        registry.get_sample_value("gramlink_notify_delivered_total", {"clinical": flag}) or 0
        for flag in ("true", "false")
    )


def test_two_workers_on_one_database_never_send_a_notification_twice(db_url: str) -> None:
    """The API's worker and a separate ``gramlink alerts`` one: own engines, one DB."""
    secret = secrets.token_hex(16)

    def slow_ok(_request: Received, _tries: int) -> int:
        time.sleep(0.005)  # the receiver's own work: widens the window for a double send
        return 200

    engines = [make_engine(db_url), make_engine(db_url)]
    migrate(engines[0])
    first, second = (session_factory(engine) for engine in engines)
    registries = [CollectorRegistry(), CollectorRegistry()]
    options = DeliveryOptions(
        concurrency=4, timeout_s=5, backoff_min_s=0.05, backoff_max_s=0.3, poll_s=0.02
    )
    try:
        with Receiver(secret, slow_ok) as receiver:
            add_channel(first, receiver.url, secret)
            queued = [queue_alert(first, clinical=i % 10 == 0) for i in range(120)]
            with (
                running(first, options, registries[0], "api"),
                running(second, options, registries[1], "alerts"),
            ):
                wait_for(lambda: receiver.count() >= 120, 60, "120 deliveries")
                wait_for(
                    lambda: all(notification(first, d).status == "delivered" for d in queued),
                    20,
                    "every notification recorded delivered",
                )
                wait_for(lambda: sum(delivered(r) for r in registries) == 120, 5, "the counters")
                per_worker = [delivered(r) for r in registries]
    finally:
        for engine in engines:
            engine.dispose()
    assert sorted(receiver.deliveries()) == sorted(queued)  # each exactly once
    assert receiver.max_concurrent_per_delivery == 1
    assert all(n > 0 for n in per_worker), per_worker  # both took part


def test_the_api_process_delivers_and_reports_it_on_metrics(api: Api) -> None:
    """The worker the API lifespan starts (GRAMLINK_API_NOTIFY, on by default)."""
    app = api.client.app
    sessions: Sessions = app.state.components.sessions  # type: ignore[attr-defined]
    worker: WebhookWorker = app.state.webhook  # type: ignore[attr-defined]
    secret = secrets.token_hex(16)
    with Receiver(secret) as receiver:
        add_channel(sessions, receiver.url, secret)
        delivery = queue_alert(sessions, clinical=True)
        worker.wake()  # as the engine does after committing
        wait_for(status_is(sessions, delivery, "delivered"), 10, "delivery by the API's worker")
    assert receiver.deliveries() == [delivery]
    assert receiver.received[0].verified

    def exposed() -> bool:
        text = api.client.get("/metrics").text
        return 'gramlink_notify_delivered_total{clinical="true"} 1.0' in text

    wait_for(exposed, 5, "the delivery counted on /metrics")
    assert "gramlink_notify_queued" in api.client.get("/metrics").text
