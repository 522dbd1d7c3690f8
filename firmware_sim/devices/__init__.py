"""Device kinds and a centre's standard device set.

Ids are ``{centre}-{abbr}{n}``: ``c001-rtr1``, ``c001-pwr1``, ``c001-bp1``,
``c001-ox1``, ``c001-th1``, ``c001-gl1``, ``c001-ws1``. A centre with M
devices takes the first M of that list, cycling, so more than seven add
``c001-rtr2`` and so on.
"""

from __future__ import annotations

from typing import Final

from contract.topics import TopicError, check_id
from firmware_sim.devices.base import Device, Reading
from firmware_sim.devices.health import (
    BpMonitor,
    Glucometer,
    HealthDevice,
    PulseOximeter,
    Thermometer,
    WeighingScale,
)
from firmware_sim.devices.power import PowerUnit
from firmware_sim.devices.router import Router
from firmware_sim.errors import ConfigError

STANDARD_SET: Final[tuple[type[Device], ...]] = (
    Router,
    PowerUnit,
    BpMonitor,
    PulseOximeter,
    Thermometer,
    Glucometer,
    WeighingScale,
)
KINDS: Final = {cls.kind.value: cls for cls in STANDARD_SET}


def centre_layout(centre: str, count: int) -> list[tuple[str, type[Device]]]:
    """(device id, class) for the first ``count`` devices of a centre's standard set."""
    if count < 1:
        raise ConfigError("devices per centre must be at least 1")
    layout = []
    for i in range(count):
        cls = STANDARD_SET[i % len(STANDARD_SET)]
        device_id = f"{centre}-{cls.abbr}{i // len(STANDARD_SET) + 1}"
        try:
            check_id(device_id, "device")
        except TopicError as exc:
            raise ConfigError(f"centre id {centre!r} too long for device ids: {exc}") from None
        layout.append((device_id, cls))
    return layout


__all__ = [
    "KINDS",
    "STANDARD_SET",
    "BpMonitor",
    "Device",
    "Glucometer",
    "HealthDevice",
    "PowerUnit",
    "PulseOximeter",
    "Reading",
    "Router",
    "Thermometer",
    "WeighingScale",
    "centre_layout",
]
