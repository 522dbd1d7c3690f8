"""What the outbox stores and reports: lanes, row states, rows, counters.

Lanes (``prio``, lower leaves first and is evicted last):

- ``PRIORITY`` (-1): clinical readings (telemetry and events of a health kind,
  ``contract.metrics.HEALTH_KINDS``) and, later, the gateway's own alerts. They
  lead the next uplink batch whatever backlog is waiting, are exempt from the
  uplink byte cap and may use the window slot bulk draining leaves free
  (:mod:`gateway.uplink`).
- ``HIGH`` (0): other events, ``state``, ``cmd/ack``, ``twin/reported``.
- ``BULK`` (1): other telemetry (routers, power units, the gateway's own health).

A store written before the priority lane existed has only 0 and 1: its rows keep
their meaning.

``flags`` is a bit set: ``CLOCK_SUSPECT`` marks a reading whose device time is
implausible (:mod:`gateway.clock_sanity`); its envelope record says so (``cs``)
and it is stored at its receive time with the device's time kept beside it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Final

PRIORITY: Final = -1
HIGH: Final = 0
BULK: Final = 1
LANES: Final = (BULK, HIGH, PRIORITY)  # eviction order: the first is evicted first
READY: Final = 0
INFLIGHT: Final = 1
SENT: Final = 2
CLOCK_SUSPECT: Final = 1  # flags bit
ROW_OVERHEAD: Final = 48  # bytes of row/index bookkeeping counted per row


@dataclass(frozen=True, slots=True)
class NewRow:
    prio: int
    device: str
    channel: str
    payload: bytes
    rx_ms: int
    flags: int = 0

    @property
    def size(self) -> int:
        return len(self.payload) + len(self.device) + len(self.channel) + ROW_OVERHEAD


@dataclass(frozen=True, slots=True)
class Row:
    id: int
    device: str
    channel: str
    payload: bytes
    rx_ms: int
    size: int
    prio: int = BULK
    flags: int = 0

    @property
    def clock_suspect(self) -> bool:
        return bool(self.flags & CLOCK_SUSPECT)


ROW_COLUMNS: Final = "id, device, channel, payload, rx_ms, size, prio, flags"


@dataclass(frozen=True, slots=True)
class AppendResult:
    stored: int
    evicted: int  # older rows removed to make room
    refused: int  # new rows not stored (no bulk row left to evict)


@dataclass(frozen=True, slots=True)
class OutboxStats:
    depth: int
    ready: int
    bytes: int
    oldest_rx_ms: int | None
    dropped_total: int
    rejected_total: int
    unreceipted: int = 0  # rows sent (PUBACK delivered) and not yet receipted
    unreceipted_oldest_s: float | None = None  # how long the oldest such batch has waited
    appended_bytes: int = 0  # bytes stored since this process opened the store (inflow)
    clock_suspect_total: int = 0  # readings stored flagged CLOCK_SUSPECT (persisted)


@dataclass(frozen=True, slots=True)
class Expired:
    batches: int
    rows: int


@dataclass(frozen=True, slots=True)
class Rebased:
    rows: int  # receive times moved
    own: int  # the gateway's own readings whose ts moved too
    flagged: int  # readings found implausible once the clock was right


def now_ms() -> int:
    return time.time_ns() // 1_000_000
