"""Per-device sequence accounting: merging the ``sequences`` reports of every ingest worker.

A report says "these readings of device D (spans of seqs) were stored", at the
time it was written (arrival order). Per device the registry keeps the current
numbering (``epoch``): the lowest and highest seq seen, and gaps:

- ``open``: seqs between stored ones that no worker has reported yet;
- ``closed``: filled later than ``grace`` after they opened (a late reading:
  a redelivery, a resend after a receipt timeout);
- ``lost``: still open ``horizon`` after they opened (given up; counted).

A gap filled within ``grace`` is two workers' reports crossing (worker B wrote
seqs 1-100, worker A 101-200, A reported first): it is removed without a trace.
Open gaps younger than ``grace`` are shown as ``settling`` and not counted.

The merge is idempotent: seqs already accounted for (a batch stored twice, a
report written twice, a report re-read) change nothing.

Restarted numbering (a device reboot that resets its counter): a span that
starts at or below the highest seq while its first reading is newer in device
time than the reading holding the highest seq starts a new epoch. The old
epoch's open gaps stay open (they can still be filled: readings whose device
time is not after the old epoch's last reading are matched against them) and
are given up after the horizon like any other. Accounting starts at the first
seq seen: readings before it are not known to be missing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from api.db.models import SequenceCheckpoint, SequenceGap, SequenceState
from contract.sequences import Span

OPEN, CLOSED, LOST = "open", "closed", "lost"
CHECKS_PER_ROUND = 200
# The seqs of a gap found in storage (between its device times ``ts_before``..``ts_after``).
Lookup = Callable[[SequenceGap], Iterable[int]]


@dataclass(frozen=True, slots=True)
class Report:
    centre: str
    device: str
    at_ns: int
    spans: list[Span]


@dataclass(slots=True)
class Merged:
    """What one merge changed (for logs and metrics)."""

    reports: int = 0
    new_readings: int = 0
    filled_readings: int = 0  # filled a gap: late, or reports crossing within the grace
    recovered_readings: int = 0
    opened_gaps: int = 0
    resets: int = 0
    lost_readings: int = 0
    devices: set[tuple[str, str]] = field(default_factory=set)


class Accountant:
    def __init__(self, *, grace_ns: int, horizon_ns: int) -> None:
        self.grace_ns = grace_ns
        self.horizon_ns = horizon_ns

    # --- merging reports -----------------------------------------------------------

    def merge(self, session: Session, reports: list[Report], merged: Merged) -> None:
        _preload(session, {(r.centre, r.device) for r in reports})
        for report in sorted(reports, key=lambda r: r.at_ns):
            if not report.spans:
                continue
            key = (report.centre, report.device)
            state = session.get(SequenceState, key)
            merged.reports += 1
            merged.devices.add(key)
            for span in report.spans:
                if state is None:
                    state = _new_state(report, span)
                    session.add(state)
                    merged.new_readings += span.size
                    continue
                self._span(session, state, span, report.at_ns, merged)
            assert state is not None
            state.last_report_ns = max(state.last_report_ns, report.at_ns)

    def _span(
        self, session: Session, state: SequenceState, span: Span, at: int, merged: Merged
    ) -> None:
        if span.lo <= state.high and span.ts_lo > state.high_ts:  # numbering restarted
            state.epoch += 1
            state.resets += 1
            state.prev_high_ts = state.high_ts
            state.low, state.high, state.high_ts = span.lo, span.hi, span.ts_hi
            state.low_ts = span.ts_lo
            state.stored += span.size
            merged.resets += 1
            merged.new_readings += span.size
            return
        if state.epoch > 1 and span.ts_hi <= state.prev_high_ts:  # an earlier numbering's
            filled = self._fill(session, state, span.lo, span.hi, at, older=True)
            state.stored += filled
            merged.filled_readings += filled
            return
        lo, hi = span.lo, span.hi
        if lo < state.low:  # below everything seen in this numbering
            top = min(hi, state.low - 1)
            if top < state.low - 1:
                gap = (top + 1, state.low - 1, span.ts_hi, state.low_ts)
                self._open(session, state, *gap, at, merged)
            state.stored += top - lo + 1
            merged.new_readings += top - lo + 1
            state.low, state.low_ts = lo, span.ts_lo
            lo = top + 1
        if lo <= hi and lo <= state.high:
            filled = self._fill(session, state, lo, min(hi, state.high), at, older=False)
            state.stored += filled
            merged.filled_readings += filled
            lo = state.high + 1
        if lo <= hi:  # above the highest
            if lo > state.high + 1:
                gap = (state.high + 1, lo - 1, state.high_ts, span.ts_lo)
                self._open(session, state, *gap, at, merged)
            state.stored += hi - lo + 1
            merged.new_readings += hi - lo + 1
            state.high, state.high_ts = hi, span.ts_hi

    def _open(
        self,
        session: Session,
        state: SequenceState,
        lo: int,
        hi: int,
        ts_before: int,
        ts_after: int,
        at: int,
        merged: Merged,
    ) -> None:
        session.add(
            SequenceGap(
                centre=state.centre,
                device=state.device,
                epoch=state.epoch,
                lo=lo,
                hi=hi,
                status=OPEN,
                opened_ns=at,
                ts_before=min(ts_before, ts_after),
                ts_after=max(ts_before, ts_after),
            )
        )
        merged.opened_gaps += 1

    def _fill(
        self, session: Session, state: SequenceState, lo: int, hi: int, at: int, *, older: bool
    ) -> int:
        """Fill the open gaps within ``lo..hi``; returns the readings that were missing."""
        session.flush()
        epoch_match = SequenceGap.epoch < state.epoch if older else SequenceGap.epoch == state.epoch
        gaps = session.scalars(
            select(SequenceGap)
            .where(
                SequenceGap.centre == state.centre,
                SequenceGap.device == state.device,
                SequenceGap.status == OPEN,
                epoch_match,
                SequenceGap.lo <= hi,
                SequenceGap.hi >= lo,
            )
            .order_by(SequenceGap.epoch.desc(), SequenceGap.lo)
        ).all()
        filled = 0
        taken: list[tuple[int, int]] = []  # one reading fills at most one gap
        for gap in gaps:
            f_lo, f_hi = max(gap.lo, lo), min(gap.hi, hi)
            if any(a <= f_hi and f_lo <= b for a, b in taken):
                continue
            taken.append((f_lo, f_hi))
            filled += f_hi - f_lo + 1
            late = at - gap.opened_ns > self.grace_ns
            _take(session, state, gap, f_lo, f_hi, at, CLOSED if late else None)
        return filled

    # --- checking storage, giving up -------------------------------------------------

    def check(
        self, session: Session, now_ns: int, after_ns: int, lookup: Lookup, merged: Merged
    ) -> None:
        """Look up in storage, once, the open gaps older than ``after_ns``.

        Readings found there were stored but never reported (a worker killed between
        its write and its report, a ledger that was full): they close their gap as
        ``recovered``, neither late nor lost.
        """
        due = session.scalars(
            select(SequenceGap)
            .where(
                SequenceGap.status == OPEN,
                SequenceGap.checked_ns.is_(None),
                SequenceGap.opened_ns < now_ns - after_ns,
            )
            .order_by(SequenceGap.opened_ns)
            .limit(CHECKS_PER_ROUND)
        ).all()
        for gap in due:
            self._recover(session, gap, now_ns, lookup, merged)

    def give_up(
        self, session: Session, now_ns: int, merged: Merged, lookup: Lookup | None = None
    ) -> None:
        """Open gaps older than the horizon become lost (after a last look in storage);
        ended gaps older than it are forgotten."""
        limit = now_ns - self.horizon_ns
        expired = session.scalars(
            select(SequenceGap).where(SequenceGap.status == OPEN, SequenceGap.opened_ns < limit)
        ).all()
        for gap in expired:
            if lookup is not None:
                self._recover(session, gap, now_ns, lookup, merged)
                session.flush()
                if gap not in session or gap.status != OPEN:
                    continue
            state = session.get(SequenceState, (gap.centre, gap.device))
            size = gap.hi - gap.lo + 1
            if state is not None:
                state.lost_gaps += 1
                state.lost_readings += size
            gap.status, gap.ended_ns = LOST, now_ns
            merged.lost_readings += size
            merged.devices.add((gap.centre, gap.device))
        session.execute(
            delete(SequenceGap).where(SequenceGap.status != OPEN, SequenceGap.ended_ns < limit)
        )

    def _recover(
        self, session: Session, gap: SequenceGap, now_ns: int, lookup: Lookup, merged: Merged
    ) -> None:
        found = lookup(gap)
        state = session.get(SequenceState, (gap.centre, gap.device))
        pieces = [gap]
        for lo, hi in reversed(_runs(found)):  # from the top: ``gap`` keeps the lower part
            if state is None or gap not in session:
                break
            upper = _take(session, state, gap, lo, hi, now_ns, None)
            if upper is not None:
                pieces.append(upper)
            state.recovered_readings += hi - lo + 1
            state.stored += hi - lo + 1
            merged.recovered_readings += hi - lo + 1
        for piece in pieces:
            piece.checked_ns = now_ns


def _runs(seqs: Iterable[int]) -> list[tuple[int, int]]:
    runs: list[tuple[int, int]] = []
    for seq in sorted(set(seqs)):
        if runs and seq == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], seq)
        else:
            runs.append((seq, seq))
    return runs


def _take(
    session: Session,
    state: SequenceState,
    gap: SequenceGap,
    f_lo: int,
    f_hi: int,
    at: int,
    record: str | None,
) -> SequenceGap | None:
    """Remove ``f_lo..f_hi`` from an open gap; ``record``: keep it as a closed row.

    Returns the new row holding the gap's upper part when the fill split it.
    """
    if record is not None:
        state.late_gaps += 1
        state.late_readings += f_hi - f_lo + 1
        session.add(
            SequenceGap(
                centre=gap.centre,
                device=gap.device,
                epoch=gap.epoch,
                lo=f_lo,
                hi=f_hi,
                status=record,
                opened_ns=gap.opened_ns,
                ended_ns=at,
                ts_before=gap.ts_before,
                ts_after=gap.ts_after,
            )
        )
    upper = None
    if f_lo == gap.lo and f_hi == gap.hi:
        session.delete(gap)
    elif f_lo == gap.lo:
        gap.lo = f_hi + 1
    elif f_hi == gap.hi:
        gap.hi = f_lo - 1
    else:  # a hole in the middle: split
        upper = SequenceGap(
            centre=gap.centre,
            device=gap.device,
            epoch=gap.epoch,
            lo=f_hi + 1,
            hi=gap.hi,
            status=OPEN,
            opened_ns=gap.opened_ns,
            ts_before=gap.ts_before,
            ts_after=gap.ts_after,
            checked_ns=gap.checked_ns,
        )
        session.add(upper)
        gap.hi = f_lo - 1
    return upper


def _preload(session: Session, keys: set[tuple[str, str]]) -> None:
    """Load the states of a round's devices in a few queries (then ``get`` finds them)."""
    by_centre: dict[str, list[str]] = {}
    for centre, device in keys:
        by_centre.setdefault(centre, []).append(device)
    for centre, devices in by_centre.items():
        for i in range(0, len(devices), 500):
            session.scalars(
                select(SequenceState).where(
                    SequenceState.centre == centre, SequenceState.device.in_(devices[i : i + 500])
                )
            ).all()


def _new_state(report: Report, span: Span) -> SequenceState:
    return SequenceState(
        centre=report.centre,
        device=report.device,
        epoch=1,
        low=span.lo,
        high=span.hi,
        high_ts=span.ts_hi,
        prev_high_ts=-1,
        low_ts=span.ts_lo,
        stored=span.size,
        late_gaps=0,
        late_readings=0,
        lost_gaps=0,
        lost_readings=0,
        recovered_readings=0,
        resets=0,
        first_report_ns=report.at_ns,
        last_report_ns=report.at_ns,
    )


# --- checkpoint ------------------------------------------------------------------------


def checkpoint(session: Session) -> int | None:
    row = session.get(SequenceCheckpoint, 1)
    return None if row is None else row.until_ns


def set_checkpoint(session: Session, until_ns: int) -> None:
    row = session.get(SequenceCheckpoint, 1)
    if row is None:
        session.add(SequenceCheckpoint(id=1, until_ns=until_ns))
    else:
        row.until_ns = until_ns
