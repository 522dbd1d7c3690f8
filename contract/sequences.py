"""Sequence reports: which readings of which devices an ingest worker stored.

Ingest writes them (``ingest.sequences``) into :data:`SEQUENCES_MEASUREMENT`,
the API reads them back (``api.accounting``) and keeps per-device accounting.

A point per worker and report (more when the devices do not fit one string
field): tag ``worker``; fields ``entries`` (the format below), ``devices`` and
``readings`` (counts); timestamp = when the worker wrote the report (arrival
order, not device time). One point for all devices, not one per device: a
device reading once a minute would otherwise add a point (and a series per
device and worker) for every reading it sends.

``entries``: ``centre/device=SPANS`` joined by ``;``, in the order the readings
were noted (a device that restarted its numbering appears again, later). SPANS:
``lo-hi:tlo:thi`` joined by ``,``, ascending and disjoint; ``tlo`` and ``thi``
are the device times (ms) of the readings ``lo`` and ``hi``, which tell a late
reading from a device that restarted its numbering. Example:
``c-1/pw-1=5-9:1733130000000:1733130240000,12-12:1733130360000:1733130360000;c-1/pw-2=1-3:...``.
Ids match ``contract.topics.ID_RE``, so ``/ = ; , :`` never occur in them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Final

from contract.topics import ID_RE

SEQUENCES_MEASUREMENT: Final = "sequences"
MAX_ENTRIES_CHARS: Final = 60_000  # InfluxDB 1.x string fields stop at 64 KB


class SpanError(ValueError):
    """An entry that does not follow the format (skipped and counted by the reader)."""


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


@dataclass(frozen=True, slots=True)
class Entry:
    """The spans of one device in one report."""

    centre: str
    device: str
    spans: list[Span]


def format_spans(spans: list[Span]) -> str:
    return ",".join(f"{s.lo}-{s.hi}:{s.ts_lo}:{s.ts_hi}" for s in spans)


def parse_spans(text: str) -> list[Span]:
    """The spans of one entry, ascending; :class:`SpanError` if malformed."""
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


@dataclass(frozen=True, slots=True)
class Chunk:
    """One ``entries`` value and what it holds."""

    text: str
    devices: int
    readings: int


def format_entries(entries: Iterable[Entry]) -> Iterator[Chunk]:
    """``entries`` values, each within :data:`MAX_ENTRIES_CHARS`.

    A device with more spans than fit one value is continued in the next.
    """
    chunk: list[str] = []
    used = readings = 0  # characters and readings of the value being built
    for entry in entries:
        head = f"{entry.centre}/{entry.device}="
        parts: list[str] = []
        used += len(head) + 1
        for span in entry.spans:
            text = f"{span.lo}-{span.hi}:{span.ts_lo}:{span.ts_hi}"
            if used + len(text) + 1 > MAX_ENTRIES_CHARS and (parts or chunk):
                if parts:
                    chunk.append(head + ",".join(parts))
                yield Chunk(";".join(chunk), len(chunk), readings)
                chunk, parts, used, readings = [], [], len(head) + 1, 0
            parts.append(text)
            used += len(text) + 1
            readings += span.size
        chunk.append(head + ",".join(parts))
    if chunk:
        yield Chunk(";".join(chunk), len(chunk), readings)


def parse_entries(text: str) -> tuple[list[Entry], int]:
    """The entries of one point, in order, and how many were malformed (skipped)."""
    out: list[Entry] = []
    bad = 0
    for item in text.split(";") if text else []:
        key, _, spans = item.partition("=")
        centre, _, device = key.partition("/")
        if ID_RE.fullmatch(centre) is None or ID_RE.fullmatch(device) is None:
            bad += 1
            continue
        try:
            out.append(Entry(centre, device, parse_spans(spans)))
        except SpanError:
            bad += 1
    return out, bad
