"""The sequence accounting as the API shows it (``/v1/devices/{id}/sequence``, centres)."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from api.db.models import Device, SequenceGap, SequenceState
from api.schemas import (
    CentreSequence,
    DeviceSequence,
    SequenceCounts,
    SequenceGapPublic,
    SequenceSummary,
)
from api.services.sequences import OPEN, gaps_of, open_counts, states_of

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
