"""A large round is evaluated in parts, each a transaction of its own, so an alert raised
at a centre waits for a part rather than for the round; the parts must end where one
transaction per round ends, and an engine killed between two parts must too."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from alerting.evaluation import Reading
from api.alerts import engine as engine_module
from api.alerts.consumer import Message
from api.alerts.engine import Engine, _parts
from api.alerts.inbound import Item, Observed, Presence
from api.alerts.lifecycle import Tally
from tests.alerts.test_checkpoints import engine, outcome, registry, stream


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
