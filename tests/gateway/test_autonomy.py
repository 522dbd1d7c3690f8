"""Hours of autonomy in the gateway's health reading, as central receives it."""

from __future__ import annotations

import threading
import time

import pytest

from gramlink.services import MosquittoService
from tests.factories import wait_for
from tests.gateway.conftest import GatewayFactory
from tests.gateway.sim import Collector, Devices, router_reading

pytestmark = pytest.mark.slow


class Load:
    """A paced load generator: ``rate`` router readings a second on the local broker."""

    def __init__(self, devices: Devices) -> None:
        self.devices = devices
        self.rate = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        seq = 0
        while not self.stop.wait(0.05):  # pacing the load, not waiting for a result
            for _ in range(self.rate // 20):
                self.devices.publish("router-1", "telemetry", router_reading(seq))
                seq += 1

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)


def test_autonomy_is_reported_and_falls_when_inflow_rises(
    local_broker: MosquittoService,
    mosquitto: MosquittoService,
    make_gateway: GatewayFactory,
    centre: str,
) -> None:
    collector = Collector(mosquitto, centre).start()
    devices = Devices(local_broker, centre)
    gw = make_gateway(
        centre,
        local_broker,
        mosquitto,
        health_interval_s=0.5,
        autonomy_window_s=2,
        disk_budget_bytes=64 * 1024**2,
    )
    stop = threading.Event()
    watchdog = threading.Thread(target=gw.run_until, args=(stop,), daemon=True)
    watchdog.start()
    load = Load(devices)

    def autonomy_after(moment: float) -> float:
        """The autonomy_h of the first health reading whose window starts after ``moment``."""
        found: list[float] = []

        def reported() -> bool:
            for arrival in collector.of(gw.settings.gateway_id):
                metrics = arrival.payload["metrics"]
                if arrival.at > moment + 2.5 and "autonomy_h" in metrics:
                    found.append(metrics["autonomy_h"])
                    return True
            return False

        wait_for(reported, 20, "a health reading with autonomy_h")
        return found[0]

    try:
        load.rate = 20
        low = autonomy_after(time.monotonic())
        load.rate = 400
        high = autonomy_after(time.monotonic())
        assert 0 < high < low / 5, (low, high)
        # 64 MiB at ~400 readings/s of ~200 bytes: well under a day, far above a minute.
        assert 1 / 60 < high < 24
    finally:
        load.close()
        stop.set()
        watchdog.join(5)
        devices.close()
        collector.close()
