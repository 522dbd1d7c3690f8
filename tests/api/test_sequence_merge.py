"""The merge of sequence reports, on a real (SQLite) registry: gaps, late, lost, restarts."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from api.db.models import SequenceGap, SequenceState
from api.db.session import make_engine, migrate, session_factory
from api.services.sequence_views import open_counts, totals_by_centre
from api.services.sequences import Accountant, Merged, Report
from contract.sequences import Span, format_spans, parse_spans
from tests.api.conftest import Postgres

S = 1_000_000_000
GRACE, HORIZON = 30 * S, 7 * 86_400 * S
T0 = 1_764_000_000 * S  # report times (arrival)
TS0 = 1_764_000_000_000  # device times (ms)


@pytest.fixture(params=["sqlite", "postgresql"])
def sessions(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'seq.sqlite'}"
    else:
        pg: Postgres = request.getfixturevalue("postgres")
        url = pg.url(pg.create_database())
    engine = make_engine(url)
    migrate(engine)
    yield session_factory(engine)
    engine.dispose()


class Ledger:
    """Feeds reports like the API's loop does, one transaction per round."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions
        self.accountant = Accountant(grace_ns=GRACE, horizon_ns=HORIZON)

    def report(self, at_s: float, *spans: tuple[int, int], ts_base: int = TS0) -> Merged:
        merged = Merged()
        parsed = [Span(lo, hi, ts_base + lo * 1000, ts_base + hi * 1000) for lo, hi in spans]
        with self.sessions.begin() as session:
            report = Report("c1", "d1", T0 + int(at_s * S), parsed)
            self.accountant.merge(session, [report], merged)
        return merged

    def sweep(self, at_s: float) -> Merged:
        merged = Merged()
        with self.sessions.begin() as session:
            self.accountant.give_up(session, T0 + int(at_s * S), merged)
        return merged

    def state(self) -> SequenceState:
        with self.sessions() as session:
            found = session.get(SequenceState, ("c1", "d1"))
            assert found is not None
            return found

    def open(self, at_s: float) -> tuple[int, int, int]:
        with self.sessions() as session:
            counts = open_counts(session, T0 + int(at_s * S) - GRACE)
            return counts.get(("c1", "d1"), (0, 0, 0))


@pytest.fixture
def ledger(sessions: sessionmaker[Session]) -> Ledger:
    return Ledger(sessions)


def test_spans_round_trip() -> None:
    spans = [Span(5, 9, 1, 2), Span(12, 12, 3, 3)]
    assert parse_spans(format_spans(spans)) == spans


def test_a_hole_is_an_open_gap_once_the_grace_passed(ledger: Ledger) -> None:
    ledger.report(0, (1, 10), (14, 20))
    assert ledger.open(1) == (0, 0, 1)  # settling: another worker may still report 11-13
    assert ledger.open(31) == (1, 3, 0)
    assert ledger.state().high == 20
    assert ledger.state().stored == 17


def test_workers_reports_crossing_within_the_grace_leave_no_trace(ledger: Ledger) -> None:
    ledger.report(0, (101, 200))  # worker A reported first
    ledger.report(5, (1, 100))  # worker B: earlier readings, later report
    ledger.report(10, (201, 300))
    ledger.report(12, (301, 350))
    ledger.report(11, (250, 260))  # a redelivery: already counted
    state = ledger.state()
    assert (state.low, state.high, state.stored) == (1, 350, 350)
    assert (state.late_gaps, state.late_readings, state.lost_gaps) == (0, 0, 0)
    assert ledger.open(100) == (0, 0, 0)


def test_a_hole_filled_after_the_grace_is_closed_late(ledger: Ledger) -> None:
    ledger.report(0, (1, 10), (20, 30))
    ledger.report(60, (12, 14))  # part of it, late: the gap splits
    assert ledger.open(61) == (2, 6, 0)
    ledger.report(120, (11, 11), (15, 19))
    state = ledger.state()
    assert (state.late_gaps, state.late_readings, state.stored) == (3, 9, 30)
    assert ledger.open(200) == (0, 0, 0)
    ledger.report(130, (11, 19))  # the same readings again: nothing changes
    assert (ledger.state().late_readings, ledger.state().stored) == (9, 30)


def test_a_gap_older_than_the_horizon_is_lost(ledger: Ledger) -> None:
    ledger.report(0, (1, 10), (16, 20))
    assert ledger.sweep(HORIZON / S - 1).lost_readings == 0
    assert ledger.sweep(HORIZON / S + 1).lost_readings == 5
    state = ledger.state()
    assert (state.lost_gaps, state.lost_readings) == (1, 5)
    assert ledger.open(HORIZON / S + 2) == (0, 0, 0)
    assert ledger.sweep(HORIZON / S + 3).lost_readings == 0  # counted once


def test_a_restarted_numbering_starts_a_new_epoch(ledger: Ledger) -> None:
    ledger.report(0, (1, 500), (502, 600))  # 501 missing in the first numbering
    later = TS0 + 3_600_000  # after a reboot: seq 1 again, an hour later in device time
    merged = ledger.report(40, (1, 50), ts_base=later)
    assert merged.resets == 1
    state = ledger.state()
    assert (state.epoch, state.low, state.high, state.stored) == (2, 1, 50, 649)
    assert ledger.open(100) == (1, 1, 0)  # the old numbering's gap stays open
    ledger.report(50, (40, 60), ts_base=later)  # a redelivery overlapping: 51-60 are new
    ledger.report(300, (501, 501))  # the old numbering's late reading, by its device time
    state = ledger.state()
    assert (state.epoch, state.high, state.stored, state.late_readings) == (2, 60, 660, 1)
    assert ledger.open(400) == (0, 0, 0)


def test_centre_totals_add_up(ledger: Ledger, sessions: sessionmaker[Session]) -> None:
    ledger.report(0, (1, 10), (13, 20))
    ledger.sweep(HORIZON / S + 1)
    ledger.report(HORIZON / S + 2, (21, 30), (35, 40))
    with sessions() as session:
        totals = totals_by_centre(session, T0 + HORIZON + 100 * S)["c1"]
    assert (totals.devices, totals.stored, totals.lost_readings) == (1, 34, 2)
    assert (totals.open_gaps, totals.open_readings) == (1, 4)


def test_gaps_found_in_storage_are_recovered_before_anything_is_lost(
    ledger: Ledger, sessions: sessionmaker[Session]
) -> None:
    ledger.report(0, (1, 10), (18, 20))  # 11-17 stored by a worker that died before reporting?
    asked: list[tuple[int, int, int, int]] = []

    def stored(found: set[int]) -> Callable[[SequenceGap], Iterable[int]]:
        def lookup(gap: SequenceGap) -> Iterable[int]:
            asked.append((gap.lo, gap.hi, gap.ts_before, gap.ts_after))
            return [s for s in found if gap.lo <= s <= gap.hi]

        return lookup

    merged = Merged()
    with sessions.begin() as session:
        ledger.accountant.check(session, T0 + 700 * S, 600 * S, stored({12, 13, 15}), merged)
    assert asked == [(11, 17, TS0 + 10_000, TS0 + 18_000)]  # where to look: device times
    assert merged.recovered_readings == 3
    assert ledger.open(800) == (3, 4, 0)  # 11, 14, 16-17
    with sessions.begin() as session:  # looked up once only
        ledger.accountant.check(session, T0 + 900 * S, 600 * S, stored({11}), Merged())
    assert ledger.open(901) == (3, 4, 0)

    merged = Merged()
    with sessions.begin() as session:  # a last look before giving up
        ledger.accountant.give_up(session, T0 + HORIZON + S, merged, stored({11}))
    assert (merged.recovered_readings, merged.lost_readings) == (1, 3)
    state = ledger.state()
    assert (state.recovered_readings, state.lost_readings, state.stored) == (4, 3, 17)
    assert state.late_readings == 0
