"""Fixtures of the alert engine tests: a registry (SQLite, migrated), the engine's own
broker account, an engine in a thread, and a publisher that plays devices and gateways
straight onto the session's central broker with device times the test chooses."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from alerting.defaults import DEFAULT_PACK
from alerting.rules import RuleSpec
from api.alerts.metrics import EngineMetrics
from api.alerts.service import AlertService
from api.alerts.settings import AlertsSettings
from api.db.models import (
    Alert,
    AlertRule,
    Centre,
    Device,
    Notification,
    NotificationChannel,
    Silence,
)
from api.db.session import make_engine, migrate, session_factory
from contract.codec import encode, encode_batch_parts
from contract.edge import alert_upstream_topic
from contract.messages import State, event, telemetry
from contract.metrics import METRICS_BY_KIND, DeviceKind
from contract.topics import Channel, topic
from gramlink.broker_accounts import DynsecSession, alerts_account, ensure_account, new_password
from gramlink.services import InfluxService, MosquittoService
from tests.api.conftest import postgres  # noqa: F401  (the session's PostgreSQL)
from tests.conftest import BrokerFactory
from tests.factories import admin_client, close, unique_id, wait_for

_LOGINS: dict[Path, tuple[str, str]] = {}


def alerts_login(broker: MosquittoService) -> tuple[str, str]:
    """The engine's own account on ``broker`` (as ``gramlink stack up`` makes it), once."""
    if broker.home not in _LOGINS:
        username, password = f"alerts-{secrets.token_hex(3)}", new_password()
        with DynsecSession(broker.url, broker.admin_user, broker.admin_password) as session:
            ensure_account(session, alerts_account(username), password)
        _LOGINS[broker.home] = (username, password)
    return _LOGINS[broker.home]


def wait_for_or_not(check: Callable[[], bool], timeout: float) -> bool:
    try:
        wait_for(check, timeout)
    except AssertionError:
        return False
    return True


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass
class Registry:
    """The registry database, used directly (rules and channels as the API would store them)."""

    url: str
    sessions: sessionmaker[Session]

    def centre(self, **facts: Any) -> str:
        centre = unique_id("c")
        with self.sessions.begin() as s:
            s.add(Centre(id=centre, name=centre, **facts))
        return centre

    def device(self, centre: str, kind: str, prefix: str = "d") -> str:
        device = unique_id(prefix)
        with self.sessions.begin() as s:
            s.add(Device(id=device, centre_id=centre, kind=kind, model="m1"))
        return device

    def rule(self, pack_key: str, centre: str, **condition: Any) -> str:
        """The default pack's rule, scoped to ``centre``, its condition's fields overridden."""
        spec = DEFAULT_PACK[pack_key].model_dump(mode="json", by_alias=True)
        spec["scope"] = {"kind": "centre", "value": centre}
        spec["condition"] = {**spec["condition"], **condition}
        checked = RuleSpec.model_validate(spec)
        rule_id = unique_id(pack_key[:20])
        with self.sessions.begin() as s:
            s.add(
                AlertRule(
                    id=rule_id,
                    name=checked.name,
                    severity=checked.severity.value,
                    enabled=True,
                    spec=checked.model_dump(mode="json", by_alias=True),
                    version=1,
                )
            )
        return rule_id

    def channel(self) -> int:
        with self.sessions.begin() as s:
            row = NotificationChannel(
                name=unique_id("ch"), url="http://127.0.0.1:9/hook", secret="s" * 32
            )
            s.add(row)
            s.flush()
            return row.id

    def silence(self, **matchers: Any) -> None:
        at = datetime.now(UTC)
        with self.sessions.begin() as s:
            s.add(
                Silence(
                    starts_at=at - timedelta(minutes=1),
                    ends_at=at + timedelta(hours=1),
                    created_by="test",
                    comment="planned maintenance",
                    **matchers,
                )
            )

    def alerts(self, centre: str, rule_id: str | None = None) -> list[Alert]:
        with self.sessions() as s:
            query = select(Alert).where(Alert.centre == centre)
            if rule_id is not None:
                query = query.where(Alert.rule_id == rule_id)
            return list(s.scalars(query.order_by(Alert.started_ms)))

    def alert(self, centre: str, rule_id: str, state: str | None = None) -> Alert | None:
        found = [a for a in self.alerts(centre, rule_id) if state is None or a.state == state]
        return found[-1] if found else None

    def notifications(self, centre: str) -> list[Notification]:
        with self.sessions() as s:
            ids = select(Alert.id).where(Alert.centre == centre)
            query = select(Notification).where(Notification.alert_id.in_(ids))
            return list(s.scalars(query.order_by(Notification.created_at)))

    def events(self, centre: str, rule_id: str | None = None) -> list[tuple[str, str]]:
        """(rule id, event) of every notification queued for ``centre``."""
        with self.sessions() as s:
            rows = s.execute(
                select(Alert.rule_id, Notification.event)
                .join(Alert, Alert.id == Notification.alert_id)
                .where(Alert.centre == centre)
                .order_by(Notification.created_at)
            ).all()
        return [(r, e) for r, e in rows if rule_id is None or r == rule_id]


@pytest.fixture(scope="session")
def mosquitto(broker_factory: BrokerFactory) -> MosquittoService:
    """The alert tests' own central broker: their persistent engine sessions, retained
    states and simulated fleets stay off the broker the API tests share."""
    return broker_factory(login_files=True)


@pytest.fixture(params=["sqlite"])
def registry(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Registry]:
    """The registry on SQLite; a test parametrized with ``postgresql`` gets PostgreSQL."""
    url = f"sqlite:///{tmp_path / 'registry.sqlite'}"
    if request.param == "postgresql":
        pg = request.getfixturevalue("postgres")
        url = pg.url(pg.create_database())
    engine = make_engine(url)
    migrate(engine)
    yield Registry(url, session_factory(engine))
    engine.dispose()


def engine_settings(
    broker: MosquittoService, influx: InfluxService, registry: Registry, **over: Any
) -> AlertsSettings:
    username, password = alerts_login(broker)
    values: dict[str, Any] = {
        "db_url": registry.url,
        "mqtt_url": broker.url,
        "mqtt_username": username,
        "mqtt_password": password,
        "client_id": unique_id("alerts"),
        "session_expiry_s": 120,
        "influx_url": influx.url,
        "influx_db": influx.database,
        "influx_user": influx.admin_user,
        "influx_password": influx.admin_password,
        "tick_s": 0.2,
        "rules_refresh_s": 0.5,
        "absence_min_wall_s": 1.0,
    }
    values.update(over)
    return AlertsSettings(**values)


@dataclass
class Publisher:
    """Devices and gateways of the test, publishing on the central broker as its admin."""

    broker: MosquittoService
    client: mqtt.Client = field(init=False)
    seqs: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.client = admin_client(self.broker)

    def _seq(self, device: str) -> int:
        self.seqs[device] = self.seqs.get(device, 0) + 1
        return self.seqs[device]

    def send(self, topic_text: str, payload: bytes, retain: bool = False) -> None:
        self.client.publish(topic_text, payload, qos=1, retain=retain).wait_for_publish(5)

    def reading(self, centre: str, device: str, kind: str, ts: int, **metrics: Any) -> None:
        """One telemetry message straight to the central broker (no gateway)."""
        model = METRICS_BY_KIND[DeviceKind(kind)](**metrics)
        body = encode(telemetry(kind, ts=ts, seq=self._seq(device), metrics=model))
        self.send(topic(centre, device, Channel.TELEMETRY), body)

    def measurement(self, centre: str, device: str, kind: str, ts: int, **metrics: Any) -> None:
        """A health measurement event straight to the central broker."""
        model = METRICS_BY_KIND[DeviceKind(kind)](**metrics)
        message = event(kind, ts=ts, seq=self._seq(device), name="measurement", metrics=model)
        self.send(topic(centre, device, Channel.EVENT), encode(message))

    def record(self, device: str, kind: str, ts: int, rx: int, **metrics: Any) -> tuple:
        """A telemetry record for :meth:`batch` (``rx``: when the gateway received it)."""
        model = METRICS_BY_KIND[DeviceKind(kind)](**(metrics or {"wan_up": True}))
        body = encode(telemetry(kind, ts=ts, seq=self._seq(device), metrics=model))
        return ("telemetry", device, body, rx)

    def batch(self, centre: str, gateway: str, records: list[tuple]) -> None:
        envelope = encode_batch_parts(gateway, self._seq(f"{gateway}/batch"), records)
        self.send(topic(centre, gateway, Channel.GATEWAY_BATCH), envelope)

    def state(self, centre: str, device: str, online: bool, kind: str | None = None) -> None:
        """A retained birth (online) or Last Will (offline), as the broker would hold it."""
        body = encode(State(online=online, kind=kind, ts=now_ms()))
        self.send(topic(centre, device, Channel.STATE), body, retain=True)

    def close(self) -> None:
        close(self.client)


@pytest.fixture
def publisher(mosquitto: MosquittoService) -> Iterator[Publisher]:
    p = Publisher(mosquitto)
    yield p
    p.close()


class Running:
    """An engine in this process, with its own metrics registry."""

    def __init__(self, settings: AlertsSettings, registry: Registry) -> None:
        self.metrics = EngineMetrics(CollectorRegistry())
        self.service = AlertService(settings, registry.sessions, self.metrics)
        self.service.start()
        wait_for(lambda: self.service.connected, 10, "the engine's two sessions")

    @property
    def rounds(self) -> float:
        return self.metrics.rounds._value.get()  # type: ignore[attr-defined]

    @property
    def messages(self) -> float:
        return self.metrics.messages._value.get()  # type: ignore[attr-defined]

    def subscribed(self, publisher: Publisher) -> None:
        """Wait until a probe published now reaches each of the engine's sessions (their
        SUBACKs are then in): a ``state`` (bulk) and an edge alert the contract refuses
        (the edge session's; counted as a bad message)."""
        probe = unique_id("probe")
        bulk = (topic(probe, "p", Channel.STATE), encode(State(online=True)))
        edge = (alert_upstream_topic(probe, "p"), b"{}")
        for name, payload in (bulk, edge):
            start = self.messages
            deadline = time.monotonic() + 10
            while self.messages == start:
                assert time.monotonic() < deadline, "the engine's subscriptions did not come up"
                publisher.send(name, payload)
                wait_for_or_not(lambda: self.messages > start, 0.3)  # noqa: B023

    def close(self) -> None:
        self.service.close()


EngineFactory = Callable[..., Running]


@pytest.fixture
def start_engine(
    mosquitto: MosquittoService,
    influx: InfluxService,
    registry: Registry,
    publisher: Publisher,
) -> Iterator[EngineFactory]:
    started: list[Running] = []

    def make(**over: Any) -> Running:
        running = Running(engine_settings(mosquitto, influx, registry, **over), registry)
        started.append(running)
        running.subscribed(publisher)
        return running

    yield make
    for running in reversed(started):
        running.close()
