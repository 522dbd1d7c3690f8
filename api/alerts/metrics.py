"""Prometheus metrics of the alert engine, on the registry it is given (the API's /metrics).

Counts and latencies only, never a centre or a device: readings evaluated,
messages refused, notifications queued, rounds and their failures, the delay
from a message's arrival to the commit of the round that evaluated it
(evaluation lag), the states held, and the alerts open (firing or acknowledged) by severity,
counted in the registry when scraped.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from api.db.models import Alert

LAG_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60)
SEVERITIES = ("info", "warning", "critical")


class EngineMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.registry = registry
        self.readings = Counter(
            "gramlink_alerts_readings_evaluated", "readings the alert engine evaluated", registry=r
        )
        self.messages = Counter(
            "gramlink_alerts_messages", "MQTT messages the alert engine processed", registry=r
        )
        self.bad = Counter(
            "gramlink_alerts_bad_messages",
            "messages or batch records refused by the contract (acknowledged, skipped)",
            registry=r,
        )
        self.notifications = Counter(
            "gramlink_alerts_notifications_queued", "notifications queued", registry=r
        )
        self.rounds = Counter("gramlink_alerts_rounds", "rounds committed", registry=r)
        self.round_failures = Counter(
            "gramlink_alerts_round_failures", "rounds not committed (tried again)", registry=r
        )
        self.lag = Histogram(
            "gramlink_alerts_evaluation_lag_seconds",
            "from a message's arrival at the engine to the commit of its evaluation",
            buckets=LAG_BUCKETS,
            registry=r,
        )
        self.states = Gauge(
            "gramlink_alerts_condition_states", "rule/subject states the engine holds", registry=r
        )


class OpenAlerts(Collector):
    """``gramlink_alerts_open{severity}``: alerts firing or acknowledged, by severity."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "gramlink_alerts_open", "open alerts by severity", labels=["severity"]
        )
        counts = dict.fromkeys(SEVERITIES, 0)
        try:
            with self._sessions() as session:
                rows = session.execute(
                    select(Alert.severity, func.count())
                    .where(Alert.state.in_(("firing", "acknowledged")))
                    .group_by(Alert.severity)
                ).all()
            counts.update({severity: int(n) for severity, n in rows})
        except SQLAlchemyError:
            return  # the registry is down: no figure rather than a wrong one
        for severity, n in counts.items():
            family.add_metric([severity], n)
        yield family

    def describe(self) -> Iterator[GaugeMetricFamily]:
        return iter(())
