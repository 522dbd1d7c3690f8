"""The sequence accounting as the API shows it: per device, per centre, totals for metrics."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from api.db.models import Device, SequenceGap, SequenceState
from api.schemas import (
    CentreSequence,
    DeviceSequence,
    SequenceCounts,
    SequenceGapPublic,
    SequenceSummary,
)
from api.services.sequences import OPEN

MAX_GAPS = 100
COUNTED = (
    "readings_stored",
    "open_gaps",
    "open_readings",
    "settling_gaps",
    "gaps_closed_late",
    "readings_late",
    "gaps_lost",
    "readings_lost",
    "readings_recovered",
    "resets",
)


def _time(ns: int | None) -> datetime | None:
    return None if ns is None else datetime.fromtimestamp(ns / 1e9, UTC)


def _summary(
    centre: str, device: str, state: SequenceState | None, opened: tuple[int, int, int]
) -> SequenceSummary:
    if state is None:
        return SequenceSummary(device_id=device, centre_id=centre, reported=False)
    gaps, readings, settling = opened
    return SequenceSummary(
        device_id=device,
        centre_id=centre,
        reported=True,
        epoch=state.epoch,
        lowest_seq=state.low,
        highest_seq=state.high,
        readings_stored=state.stored,
        open_gaps=gaps,
        open_readings=readings,
        settling_gaps=settling,
        gaps_closed_late=state.late_gaps,
        readings_late=state.late_readings,
        gaps_lost=state.lost_gaps,
        readings_lost=state.lost_readings,
        readings_recovered=state.recovered_readings,
        resets=state.resets,
        first_report_at=_time(state.first_report_ns),
        last_report_at=_time(state.last_report_ns),
    )


def _gap(gap: SequenceGap, settled_before_ns: int) -> SequenceGapPublic:
    status = gap.status
    if status == OPEN and gap.opened_ns > settled_before_ns:
        status = "settling"
    opened = _time(gap.opened_ns)
    assert opened is not None
    return SequenceGapPublic(
        epoch=gap.epoch,
        first_seq=gap.lo,
        last_seq=gap.hi,
        readings=gap.hi - gap.lo + 1,
        status=status,  # type: ignore[arg-type]
        opened_at=opened,
        ended_at=_time(gap.ended_ns),
    )


def device_sequence(session: Session, device: Device, grace_ns: int) -> DeviceSequence:
    settled_before = _now_ns() - grace_ns
    centre = device.centre_id
    state = session.get(SequenceState, (centre, device.id))
    opened = open_counts(session, settled_before, centre).get((centre, device.id), (0, 0, 0))
    summary = _summary(centre, device.id, state, opened)
    gaps = [_gap(g, settled_before) for g in gaps_of(session, centre, device.id, MAX_GAPS)]
    return DeviceSequence(**summary.model_dump(), gaps=gaps)


def centre_sequence(session: Session, centre: str, grace_ns: int) -> CentreSequence:
    settled_before = _now_ns() - grace_ns
    opened = open_counts(session, settled_before, centre)
    states = {s.device: s for s in states_of(session, centre)}
    registered = session.scalars(
        select(Device.id).where(Device.centre_id == centre).order_by(Device.id)
    ).all()
    devices = sorted({*states, *registered})
    summaries = [
        _summary(centre, d, states.get(d), opened.get((centre, d), (0, 0, 0))) for d in devices
    ]
    totals = SequenceCounts(**{name: sum(getattr(s, name) for s in summaries) for name in COUNTED})
    return CentreSequence(
        centre_id=centre,
        devices_reported=len(states),
        totals=totals,
        devices=summaries,
    )


def _now_ns() -> int:
    return time.time_ns()


# --- totals and listings ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CentreTotals:
    devices: int
    stored: int
    open_gaps: int
    open_readings: int
    late_gaps: int
    late_readings: int
    lost_gaps: int
    lost_readings: int
    recovered: int
    resets: int


def states_of(session: Session, centre: str) -> list[SequenceState]:
    return list(
        session.scalars(
            select(SequenceState)
            .where(SequenceState.centre == centre)
            .order_by(SequenceState.device)
        )
    )


def gaps_of(session: Session, centre: str, device: str, limit: int) -> list[SequenceGap]:
    """Open gaps first (oldest first), then the most recently ended ones."""
    base = select(SequenceGap).where(SequenceGap.centre == centre, SequenceGap.device == device)
    opened = session.scalars(
        base.where(SequenceGap.status == OPEN).order_by(SequenceGap.opened_ns).limit(limit)
    ).all()
    ended = session.scalars(
        base.where(SequenceGap.status != OPEN)
        .order_by(SequenceGap.ended_ns.desc())
        .limit(max(limit - len(opened), 0))
    ).all()
    return [*opened, *ended]


def open_counts(
    session: Session, settled_before_ns: int, centre: str | None = None
) -> dict[tuple[str, str], tuple[int, int, int]]:
    """Per device: (open gaps, readings in them, settling gaps) for open gaps."""
    settled = case((SequenceGap.opened_ns <= settled_before_ns, 1), else_=0)
    size = SequenceGap.hi - SequenceGap.lo + 1
    query = (
        select(
            SequenceGap.centre,
            SequenceGap.device,
            func.sum(settled),
            func.sum(size * settled),
            func.count(),
        )
        .where(SequenceGap.status == OPEN)
        .group_by(SequenceGap.centre, SequenceGap.device)
    )
    if centre is not None:
        query = query.where(SequenceGap.centre == centre)
    out: dict[tuple[str, str], tuple[int, int, int]] = {}
    for c, d, gaps, readings, total in session.execute(query):
        out[(c, d)] = (int(gaps or 0), int(readings or 0), int(total) - int(gaps or 0))
    return out


def totals_by_centre(session: Session, settled_before_ns: int) -> dict[str, CentreTotals]:
    opened: dict[str, list[int]] = {}
    for (c, _d), (gaps, readings, _settling) in open_counts(session, settled_before_ns).items():
        acc = opened.setdefault(c, [0, 0])
        acc[0] += gaps
        acc[1] += readings
    rows = session.execute(
        select(
            SequenceState.centre,
            func.count(),
            func.sum(SequenceState.stored),
            func.sum(SequenceState.late_gaps),
            func.sum(SequenceState.late_readings),
            func.sum(SequenceState.lost_gaps),
            func.sum(SequenceState.lost_readings),
            func.sum(SequenceState.recovered_readings),
            func.sum(SequenceState.resets),
        ).group_by(SequenceState.centre)
    )
    out: dict[str, CentreTotals] = {}
    for c, devices, stored, late_g, late_r, lost_g, lost_r, recovered, resets in rows:
        gaps, readings = opened.get(c, [0, 0])
        out[c] = CentreTotals(
            devices=int(devices),
            stored=int(stored or 0),
            open_gaps=gaps,
            open_readings=readings,
            late_gaps=int(late_g or 0),
            late_readings=int(late_r or 0),
            lost_gaps=int(lost_g or 0),
            lost_readings=int(lost_r or 0),
            recovered=int(recovered or 0),
            resets=int(resets or 0),
        )
    return out
