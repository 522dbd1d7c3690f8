"""Fixtures for the simulator's tests: fleets that always stop, a subscriber per centre."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from firmware_sim.fleet import Fleet, FleetConfig
from gramlink.services import MosquittoService

MONDAY_10_IST = 1_705_293_000_000  # 2024-01-15 10:00 +05:30, the clinic is open

FleetFactory = Callable[..., Fleet]


@pytest.fixture
def make_fleet(mosquitto: MosquittoService) -> Iterator[FleetFactory]:
    fleets: list[Fleet] = []

    def make(broker: MosquittoService | None = None, start: bool = True, **kwargs: Any) -> Fleet:
        broker = broker or mosquitto
        options: dict[str, Any] = {
            "port": broker.port,
            "username": broker.admin_user,
            "password": broker.admin_password,
            "start_ms": MONDAY_10_IST,
            "will_delay_s": 1,
            # Longer than a test run: Mosquitto 2.0.11 has segfaulted while expiring dozens
            # of these sessions at once (tests/conftest.py, shared_brokers_alive).
            "session_expiry_s": 3600,
        }
        options.update(kwargs)
        fleet = Fleet(FleetConfig(**options))
        fleets.append(fleet)
        if start:
            fleet.start()
            assert fleet.wait_connected(15), "fleet did not connect"
        return fleet

    yield make
    for fleet in fleets:
        fleet.stop(drain_s=2)
