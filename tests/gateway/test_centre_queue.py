"""The centre broker, run from the shipped configuration, holds what the gateway has not taken.

Issue #11 item 5: with Mosquitto's defaults a gateway SIGKILLed and restarted
10 s later lost what the broker queued for its session past 1,000 messages.
Here: real processes (the centre broker from ``centre_broker.conf``, a
simulated centre publishing 300 readings/s to it, the gateway as a
subprocess, the central broker), the gateway SIGKILLed for 10 s, so about
3,000 readings queue at the centre broker, then restarted. Every (device,
seq) the devices published must reach the central broker; none lost.
"""

from __future__ import annotations

import signal
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from firmware_sim.fleet import Fleet, FleetConfig
from gramlink.services import MosquittoService
from tests.factories import wait_for
from tests.gateway.sim import Collector, Devices, wait_until_flowing
from tests.gateway.test_failures import _gateway_process

pytestmark = pytest.mark.slow

DEVICES = 300  # each publishing one reading a second: 300 readings/s
OUTAGE_S = 10.0


def published(fleet: Fleet) -> set[tuple[str, int]]:
    """Every (device, seq) handed to MQTT so far: each device numbers from 1 without gaps."""
    return {(d, seq) for d, device in fleet.devices.items() for seq in range(1, device.seq + 1)}


def report(line: str) -> None:
    """The numbers the issue asks for, shown with ``pytest -s`` (or in the failure output)."""
    sys.stdout.write(line + "\n")


def arrived(collector: Collector) -> set[tuple[str, int]]:
    with collector.lock:
        return {(a.device, a.seq) for a in collector.arrivals}


def settle(collector: Collector, expected: set[tuple[str, int]], stall_s: float = 15.0) -> None:
    """Wait until every expected reading arrived, or none more of them for ``stall_s``
    (then the assertions below count what is missing)."""
    last, progress_at = -1, time.monotonic()
    while (count := len(expected & arrived(collector))) < len(expected):
        if count != last:
            last, progress_at = count, time.monotonic()
        elif time.monotonic() - progress_at > stall_s:
            return
        time.sleep(0.1)


@pytest.fixture
def centre_broker(broker_factory: Callable[..., MosquittoService]) -> MosquittoService:
    return broker_factory(centre=True)


@pytest.fixture
def fleet(centre_broker: MosquittoService, centre: str) -> Iterator[Fleet]:
    sim = Fleet(
        FleetConfig(
            port=centre_broker.port,
            centre_ids=(centre,),
            devices_per_centre=DEVICES,
            mode="centre",
            interval_s=1,
            username=centre_broker.admin_user,
            password=centre_broker.admin_password,
        )
    )
    yield sim
    sim.stop(drain_s=2)


def test_gateway_killed_for_10_s_at_300_per_s_loses_nothing(
    centre_broker: MosquittoService,
    mosquitto: MosquittoService,
    fleet: Fleet,
    centre: str,
    tmp_path: Path,
) -> None:
    collector = Collector(mosquitto, centre).start()
    proc = _gateway_process(centre, centre_broker, mosquitto, tmp_path / "gw")
    try:
        # The gateway's session exists (subscribed) before the first reading is sent.
        probe = Devices(centre_broker, centre)
        wait_until_flowing(probe, collector, timeout=30)
        probe.close()
        fleet.start()
        assert fleet.wait_connected(15), "simulated centre did not connect"
        wait_for(lambda: len(collector.arrivals) > DEVICES, 30, "readings flowing to central")

        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        killed = time.monotonic()
        before = fleet.counters.readings
        # The outage is the scenario: 10 s of readings queue at the centre broker.
        wait_for(lambda: time.monotonic() - killed >= OUTAGE_S, OUTAGE_S + 5, "the outage")
        during = fleet.counters.readings - before
        assert during > 2000, f"only {during} readings during the outage"  # >> Mosquitto's 1,000

        proc = _gateway_process(centre, centre_broker, mosquitto, tmp_path / "gw")
        restarted = time.monotonic()
        queued = published(fleet)  # everything the gateway missed is in here
        settle(collector, queued)
        recovery_s = time.monotonic() - restarted

        wait_for(lambda: fleet.counters.readings - before > during + DEVICES * 2, 20, "live")
        fleet.stop(drain_s=10)
        stats = fleet.stats()
        assert stats.dropped == 0 and stats.errors == 0
        assert stats.completed == stats.messages, "the centre broker acknowledged every reading"
        sent = published(fleet)
        settle(collector, sent)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(15)
        collector.close()

    with collector.lock:
        keys = [(a.device, a.seq) for a in collector.arrivals if a.device in fleet.devices]
    stored = set(keys)
    lost = sent - stored
    duplicated = sum(n - 1 for n in Counter(keys).values())
    report(
        f"\ncentre broker (shipped config), gateway SIGKILLed {OUTAGE_S:.0f} s at "
        f"{DEVICES}/s: published={len(sent)} during_outage={during} stored={len(stored)} "
        f"lost={len(lost)} duplicated_on_wire={duplicated} recovery_s={recovery_s:.1f}"
    )
    assert not lost, f"{len(lost)} readings lost, e.g. {sorted(lost)[:5]}"
    assert stored == sent  # nothing arrived that no device sent
