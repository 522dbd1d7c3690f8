"""The gateway's own health reading: ``telemetry`` of kind ``gateway``, via its outbox.

``cpu_pct`` is the whole machine's (``/proc/stat``, since the last reading),
``disk_free_mb`` the free space where the outbox lives, ``queue_depth`` and
``queue_oldest_s`` the outbox rows and the age of the oldest, ``uplink_up``
whether the central link is connected, ``dropped_total`` the evictions and
refusals since the store was created, ``uplink_rejected_total`` the messages the
central broker answered with a PUBACK that is not "delivered" (kept and resent),
``unreceipted`` the readings sent (PUBACK delivered) that no storage receipt has
named yet and ``unreceipted_oldest_s`` how long the oldest such batch has waited
(0 when none; these grow while ingest or InfluxDB is down), ``clock_suspect_total``
the readings stored with an implausible device time (:mod:`gateway.clock_sanity`)
and ``autonomy_h`` the hours of outage the outbox still holds at the current
inflow (:mod:`gateway.autonomy`). Its ``ts`` is the gateway's clock
(:class:`gateway.clock.GatewayClock`).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from contract.codec import encode
from contract.messages import telemetry
from contract.metrics import GatewayMetrics
from contract.topics import Channel
from gateway.autonomy import InflowMeter, autonomy_h
from gateway.clock import GatewayClock
from gateway.outbox import BULK, NewRow, Outbox, OutboxStats


def _cpu_times() -> tuple[int, int] | None:
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    except OSError:
        return None
    values = [int(v) for v in fields]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return idle, sum(values)


class HealthReporter:
    def __init__(
        self,
        gateway_id: str,
        outbox: Outbox,
        data_dir: Path,
        clock: GatewayClock | None = None,
        inflow: InflowMeter | None = None,
    ) -> None:
        self.gateway_id = gateway_id
        self.outbox = outbox
        self.data_dir = data_dir
        self.clock = clock or GatewayClock()
        self.inflow = inflow or InflowMeter()
        self._cpu = _cpu_times()
        self._seq = 0

    def _cpu_pct(self) -> float | None:
        now = _cpu_times()
        before, self._cpu = self._cpu, now
        if now is None or before is None or now[1] <= before[1]:
            return None
        busy = 1 - (now[0] - before[0]) / (now[1] - before[1])
        return round(min(100.0, max(0.0, busy * 100)), 1)

    def reading(self, uplink_up: bool) -> tuple[NewRow, OutboxStats]:
        stats = self.outbox.stats()
        ts = self.clock.now_ms()
        disk_free = shutil.disk_usage(self.data_dir).free
        room = min(self.outbox.budget_bytes - stats.bytes, disk_free)
        oldest = 0.0 if stats.oldest_rx_ms is None else max(0.0, (ts - stats.oldest_rx_ms) / 1000)
        # seq: never below the clock, never repeating in this process (no RTC on a Pi).
        self._seq = max(self._seq + 1, ts)
        metrics = GatewayMetrics(
            cpu_pct=self._cpu_pct(),
            disk_free_mb=round(disk_free / 1e6, 1),
            queue_depth=stats.depth,
            queue_oldest_s=round(oldest, 1),
            uplink_up=uplink_up,
            dropped_total=stats.dropped_total,
            uplink_rejected_total=stats.rejected_total,
            unreceipted=stats.unreceipted,
            unreceipted_oldest_s=round(stats.unreceipted_oldest_s or 0.0, 1),
            clock_suspect_total=stats.clock_suspect_total,
            autonomy_h=autonomy_h(room, self.inflow.sample(stats.appended_bytes)),
        )
        message = telemetry("gateway", ts=ts, seq=self._seq, metrics=metrics)
        row = NewRow(BULK, self.gateway_id, Channel.TELEMETRY.value, encode(message), ts)
        return row, stats
