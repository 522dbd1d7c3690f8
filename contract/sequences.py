"""Sequence reports: which readings of a device were stored, as compact spans.

Ingest writes them (``ingest.sequences``) into :data:`SEQUENCES_MEASUREMENT`,
the API reads them back (``api.accounting``) and keeps per-device accounting.

A point: tags ``centre``, ``device``, ``worker``; fields ``spans`` (the format
below), ``count`` (distinct readings in the spans), ``high`` (the highest seq);
timestamp = when the worker wrote the report (arrival order, not device time).

Spans format: ``lo-hi:tlo:thi`` joined by ``,``, ascending and disjoint; ``tlo``
and ``thi`` are the device times (ms) of the readings ``lo`` and ``hi``, which
tell a late reading from a device that restarted its numbering. Example:
``5-9:1733130000000:1733130240000,12-12:1733130360000:1733130360000``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

SEQUENCES_MEASUREMENT: Final = "sequences"
MAX_SPANS_CHARS: Final = 60_000  # InfluxDB 1.x string fields stop at 64 KB


class SpanError(ValueError):
    """A ``spans`` field that does not follow the format (the report is skipped, counted)."""


@dataclass(frozen=True, slots=True)
class Span:
    """Readings ``lo..hi`` (inclusive) of one device; device times of the two ends (ms)."""

    lo: int
    hi: int
    ts_lo: int
    ts_hi: int

    @property
    def size(self) -> int:
        return self.hi - self.lo + 1


def format_spans(spans: list[Span]) -> str:
    return ",".join(f"{s.lo}-{s.hi}:{s.ts_lo}:{s.ts_hi}" for s in spans)


def parse_spans(text: str) -> list[Span]:
    """The spans of one report, ascending; :class:`SpanError` if malformed."""
    out: list[Span] = []
    if not text:
        return out
    for part in text.split(","):
        try:
            seqs, ts_lo, ts_hi = part.split(":")
            lo, _, hi = seqs.partition("-")
            span = Span(int(lo), int(hi), int(ts_lo), int(ts_hi))
        except ValueError as exc:
            raise SpanError(f"bad span {part[:40]!r}") from exc
        if span.lo < 0 or span.hi < span.lo or (out and span.lo <= out[-1].hi):
            raise SpanError(f"span {part[:40]!r} out of order")
        out.append(span)
    return out
