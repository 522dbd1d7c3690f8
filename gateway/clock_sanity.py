"""Clock sanity: which device times the gateway does not believe.

A reading's device time ``ts`` is implausible when it is

- more than ``PAST_MARGIN_MS`` (7 days: what a device may hold back while
  nothing takes its readings) before the gateway first ran (``first_run_ms``,
  kept in the outbox's meta, and never earlier than ``FLOOR_MS``: a store
  created by a gateway whose clock started at 1970 does not make 1970
  plausible), or
- more than ``PAST_MARGIN_MS`` before the device was provisioned (the API's
  time, sent with the device's credentials: ``DynsecUpdate.provisioned_ms``, kept
  in :class:`gateway.centre_devices.CentreDevices`; a device the updates did not
  date is not judged by it), or
- more than ``ahead_ms`` (default an hour) ahead of the gateway's clock, once
  that clock is synced (before, the device may well be right and the gateway
  behind; :meth:`gateway.outbox.Outbox.rebase` judges those rows again when the
  clock steps).

Such a reading is neither quarantined nor re-stamped: its row is flagged
``CLOCK_SUSPECT``; it travels with ``"cs":true`` and is stored at its receive
time with the device's time as ``device_ts`` (docs/gateway.md, "Clock sanity").
The gateway's own readings are never judged (their time is the gateway's clock).
"""

from __future__ import annotations

from typing import Final, Protocol

FLOOR_MS: Final = 1_704_067_200_000  # 2024-01-01T00:00Z: no GramLink gateway ran before
PAST_MARGIN_MS: Final = 7 * 86_400_000


class Clock(Protocol):
    def now_ms(self) -> int: ...

    def synced(self) -> bool: ...


class Provisioned(Protocol):
    def provisioned_ms(self, device: str) -> int | None: ...


class ClockSanity:
    """Judges device times against the gateway's first run, the device's provisioning
    and the gateway's (synced) clock."""

    def __init__(
        self,
        clock: Clock,
        first_run_ms: int,
        ahead_ms: int = 3_600_000,
        provisioned: Provisioned | None = None,
    ) -> None:
        self.clock = clock
        self.first_run_ms = max(first_run_ms, FLOOR_MS)
        self.ahead_ms = ahead_ms
        self.provisioned = provisioned

    def suspect(self, ts: int, rx_ms: int, device: str | None = None) -> bool:
        if ts < self.first_run_ms - PAST_MARGIN_MS:
            return True
        if device is not None and self.provisioned is not None:
            at = self.provisioned.provisioned_ms(device)
            if at is not None and ts < at - PAST_MARGIN_MS:
                return True
        return ts > rx_ms + self.ahead_ms and self.clock.synced()

    def moved(self, step_ms: int, first_run_this_run: bool) -> None:
        """The wall clock stepped: a first run stamped by this process moves with it."""
        if first_run_this_run:
            self.first_run_ms = max(self.first_run_ms + step_ms, FLOOR_MS)
