"""Prometheus metrics of webhook delivery, registered on the registry the owner passes.

The API passes its own (``ApiMetrics.registry``, served at ``/metrics``); the
standalone ``gramlink alerts`` process passes one of its own. Labels are
bounded: an outcome, a status, clinical or not; never a channel, URL or alert.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

# How one try ended (label ``outcome`` of gramlink_notify_attempts).
OUTCOMES = ("delivered", "refused", "http_error", "timeout", "unreachable")
DELIVERY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 1800, 3600, 21_600, 86_400)


class DeliveryMetrics(Collector):
    """Counters kept by the worker; one collector, so it is registered and removed at once."""

    def __init__(self) -> None:
        self.delivered = Counter(
            "gramlink_notify_delivered",
            "notifications a receiver accepted (2xx)",
            ["clinical"],
            registry=None,
        )
        self.attempts = Counter(
            "gramlink_notify_attempts",
            "webhook requests made, by how they ended",
            ["outcome"],
            registry=None,
        )
        self.failed = Counter(
            "gramlink_notify_failed",
            "notifications that turned failed (they are still retried)",
            registry=None,
        )
        self.lost_leases = Counter(
            "gramlink_notify_lost_leases",
            "tries whose result came after another worker had taken the notification over",
            registry=None,
        )
        self.waiting = Gauge(
            "gramlink_notify_queued",
            "notifications not yet delivered, by status (queued or failed)",
            ["status"],
            registry=None,
        )
        self.oldest_s = Gauge(
            "gramlink_notify_oldest_waiting_seconds",
            "age of the oldest notification not yet delivered",
            registry=None,
        )
        self.delivery_seconds = Histogram(
            "gramlink_notify_delivery_seconds",
            "time from queueing a notification to a receiver accepting it",
            buckets=DELIVERY_BUCKETS,
            registry=None,
        )
        for outcome in OUTCOMES:
            self.attempts.labels(outcome)
        for status in ("queued", "failed"):
            self.waiting.labels(status)

    def register(self, registry: CollectorRegistry) -> None:
        registry.register(self)

    def unregister(self, registry: CollectorRegistry) -> None:
        registry.unregister(self)

    def collect(self) -> Iterable[Metric]:
        for metric in (
            self.delivered,
            self.attempts,
            self.failed,
            self.lost_leases,
            self.waiting,
            self.oldest_s,
            self.delivery_seconds,
        ):
            yield from metric.collect()
