"""A large round is evaluated in parts, each a transaction of its own, so an alert raised
at a centre waits for a part rather than for the round; the parts must end where one
transaction per round ends, and an engine killed between two parts must too."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from alerting.evaluation import Reading
from api.alerts import engine as engine_module
from api.alerts.consumer import Message
from api.alerts.engine import Engine, _parts
from api.alerts.inbound import Item, Observed, Presence
from api.alerts.lifecycle import Tally
from api.alerts.metrics import EngineMetrics
from api.alerts.settings import AlertsSettings
from api.db.models import Alert
from contract.codec import encode_batch_parts
from contract.topics import Channel, topic
from tests.alerts.test_checkpoints import (
    CENTRE,
    GATEWAY,
    MINUTE,
    POWER,
    ROUTER,
    engine,
    outcome,
    record,
    registry,
    stream,
)


def _run(device: str, *seqs: int) -> Observed:
    readings = [Reading("c1", device, "power", 1000 + s, s, {"battery_soc_pct": 5.0}) for s in seqs]
    return Observed("c1", device, "power", readings, [None] * len(seqs))


def _flat(parts: list[list[Item]]) -> list[tuple[str, list[int]]]:
    return [
        (i.device, [r.seq for r in i.readings]) if isinstance(i, Observed) else ("state", [])
        for part in parts
        for i in part
    ]


def test_parts_keep_a_devices_readings_together_and_non_readings_in_place() -> None:
    will = Presence("c1", "c1-gw", False, "gateway")
    items: list[Item] = [
        _run("a", 1, 2),
        _run("b", 3),
        _run("a", 4),
        _run("c", 5, 6, 7),
        will,
        _run("a", 8),
    ]
    parts = _parts(items, 3)
    # a's two runs before the Last Will go together; nothing crosses the Last Will
    assert _flat(parts) == [
        ("a", [1, 2]),
        ("a", [4]),
        ("b", [3]),
        ("c", [5, 6, 7]),
        ("state", []),
        ("a", [8]),
    ]
    # at most three readings a part (a device with more would have a part of its own)
    readings = [sum(len(i.readings) for i in p if isinstance(i, Observed)) for p in parts]
    assert readings == [3, 1, 3, 1]
    assert _parts([], 3) == [[]]
    assert _parts(items, 1_000) == [_flat_items(items)]


def _flat_items(items: list[Item]) -> list[Item]:
    """``items`` as one part: each device's runs before a non-reading grouped."""
    return [items[0], items[2], items[1], items[3], items[4], items[5]]


def _seen(sessions: sessionmaker[Session]) -> dict[str, Any]:
    """:func:`outcome`, without the wall-clock time a centre's saved clock carries."""
    got = outcome(sessions)
    for (rule, _subject), state in got["states"].items():
        if rule == "_clock":
            state.pop("wall")
    return got


def _rounds(messages: list[Message], size: int) -> list[list[Message]]:
    return [messages[i : i + size] for i in range(0, len(messages), size)]


def _one_transaction_a_round(tmp_path: Path, messages: list[Message], *, tick: bool) -> Any:
    """What rounds of 12 envelopes, each one transaction, leave in a registry."""
    url, whole = registry(tmp_path / "whole.sqlite")
    reference = engine(url, whole)
    for part in _rounds(messages, 12):
        reference.round(part, tick=tick)
    return _seen(whole)


def _parted_engine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[str, sessionmaker[Session], Engine]:
    """A registry of its own and an engine on it whose rounds go in parts of 5 readings."""
    monkeypatch.setattr(engine_module, "PART_READINGS", 5)
    url, sessions = registry(tmp_path / "parted.sqlite")
    return url, sessions, engine(url, sessions)


def test_a_round_in_parts_ends_where_one_transaction_a_round_ends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    messages = stream()
    expected = _one_transaction_a_round(tmp_path, messages, tick=True)

    _url, parted, running = _parted_engine(tmp_path, monkeypatch)
    calls: list[Tally] = []
    for part in _rounds(messages, 12):
        running.round(part, tick=True, between=calls.append)
    # 12 envelopes of 4 readings (2 devices) a round: 24 a device, one part each
    assert len(calls) == len(_rounds(messages, 12))
    assert sum(t.fired for t in calls) > 0  # what a part did is told between
    assert _seen(parted) == expected


def test_killed_between_two_parts_it_replays_the_round_to_the_same_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    messages = stream()
    expected = _one_transaction_a_round(tmp_path, messages, tick=False)

    url, killed, running = _parted_engine(tmp_path, monkeypatch)
    rounds = _rounds(messages, 12)

    def die(_: Tally) -> None:
        raise SystemExit("killed between two parts")

    for n, part in enumerate(rounds):
        if n == 2:
            with pytest.raises(SystemExit):
                running.round(part, tick=False, between=die)  # the first part committed
            running = engine(url, killed)  # what was in memory is gone; nothing was acked
        running.round(part, tick=False, between=lambda _: None)
    assert _seen(killed) == expected


def test_the_timers_run_after_the_last_part_so_a_device_in_a_later_part_is_not_silent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A round whose first part moves the centre's clock half an hour on (the router's
    reading) and whose second part holds the power unit's reading of the same minute: the
    power unit was never silent, and no timer may judge it between the two parts."""
    monkeypatch.setattr(engine_module, "PART_READINGS", 1)  # a part per device
    url, sessions = registry(tmp_path / "timers.sqlite")
    # no floor of real time without a reading: only the parts' order keeps it quiet
    settings = AlertsSettings(db_url=url, influx_url="", absence_min_wall_s=0)
    running = Engine(settings, sessions, EngineMetrics(CollectorRegistry()))
    running.load()
    t0 = int(time.time() * 1000) - 60 * MINUTE
    where = topic(CENTRE, GATEWAY, Channel.GATEWAY_BATCH)

    def envelope(seq: int, records: list[tuple]) -> Message:
        payload = encode_batch_parts(GATEWAY, seq, records)
        return Message(where, payload, seq + 1, 1, 1, time.monotonic())

    def power(m: int) -> tuple:
        return record(POWER, "power", t0 + m * MINUTE, m + 1, battery_soc_pct=80.0)

    def router(m: int) -> tuple:
        return record(ROUTER, "router", t0 + m * MINUTE, m + 1, wan_up=True)

    # a reporting interval of a minute learnt: silent after three
    first = envelope(0, [r for m in range(5) for r in (router(m), power(m))])
    running.round([first], tick=True, between=lambda _: None)
    calls: list[Tally] = []
    later = envelope(1, [router(35), power(35)])
    running.round([later], tick=True, between=calls.append)
    assert len(calls) == 1  # two parts: the router's, then the power unit's

    with sessions() as s:
        silent = s.scalars(select(Alert).where(Alert.rule_id == "device-silent")).all()
        assert [(a.subject, a.state) for a in silent] == []
    # the same timers once the clock passes the power unit's limit do fire
    running.clocks.see(CENTRE, t0 + 45 * MINUTE)
    running.round([], tick=True, between=lambda _: None)
    with sessions() as s:
        silent = s.scalars(select(Alert).where(Alert.rule_id == "device-silent")).all()
        assert {a.subject for a in silent} == {f"{CENTRE}/{POWER}", f"{CENTRE}/{ROUTER}"}
