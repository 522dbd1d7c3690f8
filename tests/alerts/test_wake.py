"""The engine wakes the notify worker after a round that queued notifications: an alert
reaches the webhook receiver at once, not at the worker's next poll."""

from __future__ import annotations

import json

from api.alerts.webhook import DeliveryOptions, WebhookWorker
from api.db.models import NotificationChannel
from tests.alerts.conftest import EngineFactory, Publisher, Registry, now_ms
from tests.api.webhook_receiver import Receiver
from tests.factories import unique_id, wait_for

SECRET = "s" * 32


def test_a_clinical_alert_reaches_the_webhook_at_once_not_at_the_next_poll(
    registry: Registry, publisher: Publisher, start_engine: EngineFactory
) -> None:
    centre = registry.centre()
    oximeter = registry.device(centre, "pulse_oximeter")
    registry.rule("spo2-low", centre)
    with Receiver(SECRET) as receiver:
        with registry.sessions.begin() as s:
            s.add(NotificationChannel(name=unique_id("ch"), url=receiver.url, secret=SECRET))
        running = start_engine()
        worker = WebhookWorker(registry.sessions, DeliveryOptions(poll_s=60.0))
        running.service.on_notified = worker.wake
        worker.start()
        try:
            for n, patient in enumerate(("a" * 64, "b" * 64), start=1):
                # the second one: the worker is then waiting out its 60 s poll
                publisher.measurement(
                    centre, oximeter, "pulse_oximeter", now_ms(), spo2_pct=85, patient_ref=patient
                )
                wait_for(lambda n=n: receiver.count() >= n, 5, f"webhook request {n}")
        finally:
            worker.close()
        refs = [json.loads(r.body)["alert"]["patient_ref"] for r in receiver.received]
        assert refs == ["a" * 64, "b" * 64]
        assert all(r.verified for r in receiver.received)
