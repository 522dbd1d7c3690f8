"""Batches of lines bounded by size and age, and the messages they acknowledge.

A message's lines always travel in one batch (a batch may pass ``max_lines``
by the lines of one message: at most one gateway envelope). A batch is due when
it holds ``max_lines`` or its first line is ``max_age_s`` old.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import NamedTuple

from ingest.sequences import Note

Ack = tuple[int, int]
"""What to acknowledge once a batch is stored: ``(packet id, connection generation)``
of a QoS 1 message. A plain tuple: one is made per message on the network thread
(a named tuple's ``__new__`` costs a Python call; measured 0.6 µs per message for
this and :data:`ingest.subscriber.Inbound` together)."""


class Stored(NamedTuple):
    """A gateway envelope whose lines are in a batch: receipted once the batch is stored."""

    centre: str
    gw: str
    seq: int


@dataclass(slots=True)
class Batch:
    lines: list[str] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)  # the reading lines', for the ledger
    acks: list[Ack] = field(default_factory=list)
    envelopes: list[Stored] = field(default_factory=list)
    born: float = 0.0
    seqno: int = 0


class Batcher:
    def __init__(self, max_lines: int, max_age_s: float) -> None:
        self.max_lines = max_lines
        self.max_age_s = max_age_s
        self._current = Batch()
        self._next_seqno = 0

    @property
    def lines(self) -> list[str]:
        """The current batch's lines: a message's converter appends here directly."""
        if not self._current.lines and not self._current.acks:
            self._current.born = time.monotonic()
        return self._current.lines

    @property
    def notes(self) -> list[Note]:
        """The current batch's notes (``PointBuilder.convert`` appends one per reading line)."""
        return self._current.notes

    @property
    def acks(self) -> list[Ack]:
        """The current batch's acknowledgements (the decode loop appends here directly)."""
        return self._current.acks

    def add_ack(self, ack: Ack | None) -> None:
        if not self._current.lines and not self._current.acks:
            self._current.born = time.monotonic()
        if ack is not None:
            self._current.acks.append(ack)

    def add_envelope(self, centre: str, gw: str, seq: int) -> None:
        """The envelope just converted into this batch (its lines travel with it)."""
        self._current.envelopes.append(Stored(centre, gw, seq))

    def empty(self) -> bool:
        return not self._current.lines and not self._current.acks

    def full(self) -> bool:
        return len(self._current.lines) >= self.max_lines

    def due_in(self, now: float) -> float:
        """Seconds until the current batch is due by age (inf when empty)."""
        if self.empty():
            return float("inf")
        return self._current.born + self.max_age_s - now

    def take(self) -> Batch:
        batch, self._current = self._current, Batch()
        batch.seqno = self._next_seqno
        self._next_seqno += 1
        return batch
