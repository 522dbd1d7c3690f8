"""Stopping a fleet after a heavy run returns once everything is acknowledged, not after the cap."""

from __future__ import annotations

import threading
import time

import pytest

from contract.topics import Channel
from tests.factories import unique_id, wait_for
from tests.firmware_sim.conftest import MONDAY_10_IST, FleetFactory


@pytest.mark.parametrize("mode", ["device", "centre"])
def test_stop_returns_promptly_once_everything_is_acknowledged(
    make_fleet: FleetFactory, mode: str
) -> None:
    fleet = make_fleet(
        start=False,
        centre_ids=(unique_id("st"), unique_id("st")),
        mode=mode,
        interval_s=10,
        backfill_end_ms=MONDAY_10_IST + 365 * 86_400_000,
    )
    fleet.start(readings=20_000)
    assert fleet.wait_connected(15)
    # several threads publish through one link at once (like readings, acks and events)
    link = fleet.links[0]
    topic_ = next(iter(fleet.devices.values())).topics

    def hammer() -> None:
        for _ in range(2000):
            link.send(topic_[Channel.EVENT], b"{}", 1, False)

    threads = [threading.Thread(target=hammer) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert fleet.done.wait(60), "a heavy run of 20,000 readings"
    wait_for(fleet.drained, 30, "every publish acknowledged")
    stats = fleet.stats()
    assert stats.completed == stats.messages
    assert all(link.outstanding == 0 for link in fleet.links)
    began = time.monotonic()
    fleet.stop(drain_s=30)
    assert time.monotonic() - began < 10, "stop waited for publishes that were already acked"
