"""Checkpoints: a busy engine writes the states that readings only moved once per
checkpoint, and holds back the acknowledgements since the last one. Killed in between,
it replays what it had not acknowledged and ends where an engine that never stopped
ends: the same alerts, counts, notifications and states."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from alerting.defaults import DEFAULT_PACK
from alerting.evaluation import jsonable
from api.alerts.consumer import Message
from api.alerts.engine import Engine
from api.alerts.metrics import EngineMetrics
from api.alerts.settings import AlertsSettings
from api.db.models import Alert, AlertCondition, AlertRule, Centre, Device, Notification
from api.db.session import make_engine, migrate, session_factory
from contract.codec import encode, encode_batch_parts
from contract.messages import telemetry
from contract.metrics import METRICS_BY_KIND, DeviceKind
from contract.topics import Channel, topic

MINUTE = 60_000
CENTRE, GATEWAY, POWER, ROUTER = "c1", "c1-gw", "c1-pow", "c1-rou"
RULES = ("battery-low", "battery-heating", "autonomy-low", "wan-latency", "device-silent")


def registry(path: Path) -> tuple[str, sessionmaker[Session]]:
    url = f"sqlite:///{path}"
    engine = make_engine(url)
    migrate(engine)
    sessions = session_factory(engine)
    with sessions.begin() as s:
        s.add(Centre(id=CENTRE, name=CENTRE))
        for device, kind in ((GATEWAY, "gateway"), (POWER, "power"), (ROUTER, "router")):
            s.add(Device(id=device, centre_id=CENTRE, kind=kind, model="m1"))
        for key in RULES:
            spec = DEFAULT_PACK[key].model_dump(mode="json", by_alias=True)
            s.add(
                AlertRule(
                    id=key, name=spec["name"], severity=spec["severity"], enabled=True,
                    spec=spec, version=1,
                )
            )  # fmt: skip
    return url, sessions


def record(device: str, kind: str, ts: int, seq: int, **metrics: Any) -> tuple:
    body = encode(
        telemetry(kind, ts=ts, seq=seq, metrics=METRICS_BY_KIND[DeviceKind(kind)](**metrics))
    )
    return ("telemetry", device, body, int(time.time() * 1000))


def stream() -> list[Message]:
    """Two hours of a centre in envelopes of two device minutes: the battery drains off grid
    (pending, firing, repeats, the autonomy forecast), heats fast for a while, and the
    WAN's latency wanders over and under its threshold."""
    t0 = int(time.time() * 1000) - 130 * MINUTE
    messages = []
    for n, start in enumerate(range(0, 120, 2)):
        records = []
        for m in (start, start + 1):
            ts = t0 + m * MINUTE
            soc = max(5.0, 60.0 - 0.5 * m)
            temp = 30.0 + (0.5 * (m - 40) if 40 <= m < 60 else (10.0 if m >= 60 else 0.0))
            records.append(
                record(
                    POWER, "power", ts, m + 1, battery_soc_pct=soc, battery_temp_c=temp,
                    grid_present=False, load_power_w=150.0,
                )
            )  # fmt: skip
            latency = 900.0 if (m // 20) % 2 else 300.0
            records.append(record(ROUTER, "router", ts, m + 1, wan_up=True, wan_latency_ms=latency))
        payload = encode_batch_parts(GATEWAY, n, records)
        topic_text = topic(CENTRE, GATEWAY, Channel.GATEWAY_BATCH)
        messages.append(Message(topic_text, payload, n + 1, 1, 1, time.monotonic()))
    return messages


def engine(url: str, sessions: sessionmaker[Session]) -> Engine:
    settings = AlertsSettings(db_url=url, influx_url="")
    running = Engine(settings, sessions, EngineMetrics(CollectorRegistry()))
    running.load()
    return running


def outcome(sessions: sessionmaker[Session]) -> dict[str, Any]:
    """What a user of the registry sees: alerts, notifications queued, saved states."""
    with sessions() as s:
        alerts = [
            (a.id, a.rule_id, a.subject, a.state, a.count, a.started_ms, a.fired_ms,
             a.resolved_ms, a.last_seen_ms, a.value, a.notified)
            for a in s.scalars(select(Alert).order_by(Alert.id))
        ]  # fmt: skip
        notified = sorted((n.alert_id, n.event) for n in s.scalars(select(Notification)))
        states = {(c.rule_id, c.subject): c.state for c in s.scalars(select(AlertCondition))}
    return {"alerts": alerts, "notifications": notified, "states": states}


def test_killed_between_checkpoints_it_replays_what_it_had_not_acknowledged_to_the_same_end(
    tmp_path: Path,
) -> None:
    messages = stream()
    url_a, straight = registry(tmp_path / "straight.sqlite")
    url_b, killed = registry(tmp_path / "killed.sqlite")

    # the reference: a checkpoint after every round, nothing ever held back
    reference = engine(url_a, straight)
    for m in messages:
        reference.round([m], tick=False)
    expected = outcome(straight)
    assert {a[1] for a in expected["alerts"]} >= {
        "battery-low", "battery-heating", "autonomy-low", "wan-latency",
    }  # fmt: skip
    assert any(a[4] > 1 for a in expected["alerts"])  # repeats folded

    # a busy engine: a checkpoint every seventh round, killed twice between checkpoints
    running = engine(url_b, killed)
    unacked: list[Message] = []
    deferred_seen = False
    kills = {23, 45}
    at = 0
    while at < len(messages):
        m = messages[at]
        at += 1
        running.round([m], tick=False, checkpoint=at % 7 == 0)
        unacked.append(m)
        if running.saved:
            unacked = []
        else:
            deferred_seen = deferred_seen or _behind(running, killed)
        if at in kills:
            kills.discard(at)
            running = engine(url_b, killed)  # what was in memory is gone
            at -= len(unacked)  # the broker redelivers what was not acknowledged
            unacked = []
    running.round([], tick=False, checkpoint=True)

    assert deferred_seen, "no state ever waited for a checkpoint: nothing was tested"
    got = outcome(killed)
    assert got["alerts"] == expected["alerts"]
    assert got["notifications"] == expected["notifications"]
    assert got["states"] == expected["states"]


def _behind(running: Engine, sessions: sessionmaker[Session]) -> bool:
    """A state in memory is ahead of its row: it waits for the checkpoint."""
    with sessions() as s:
        saved = {(c.rule_id, c.subject): c.state for c in s.scalars(select(AlertCondition))}
    unsaved = running.conditions.unsaved.items()
    return any(saved.get(key) != jsonable(state) for key, state in unsaved if state is not None)
