"""Failures: the uplink goes away, the gateway is killed, the disk budget is reached."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from gramlink.services import MosquittoService
from tests.factories import wait_for
from tests.gateway.conftest import KEY, GatewayFactory
from tests.gateway.sim import (
    Collector,
    Devices,
    bp_event,
    router_reading,
    wait_until_flowing,
    wait_until_received,
)

pytestmark = pytest.mark.slow
BrokerFactory = Callable[..., MosquittoService]


def test_uplink_outage_loses_nothing_and_stores_nothing_twice(
    local_broker: MosquittoService,
    broker_factory: BrokerFactory,
    make_gateway: GatewayFactory,
    centre: str,
) -> None:
    central = broker_factory()
    collector = Collector(central, centre).start()
    devices = Devices(local_broker, centre)
    gw = make_gateway(centre, local_broker, central)
    wait_until_flowing(devices, collector)
    probes = gw.local_in.received_total  # probes sent before the subscription are not counted

    total = 3000
    for seq in range(total // 3):
        devices.publish("router-1", "telemetry", router_reading(seq))
    central.stop()  # the VSAT link goes away mid-flow
    for seq in range(total // 3, total):
        devices.publish("router-1", "telemetry", router_reading(seq))
        if seq % 100 == 0:
            devices.publish("bp-1", "event", bp_event(seq))
    expected = probes + total + 20
    wait_for(lambda: gw.local_in.received_total >= expected, 30, "all stored at the gateway")
    assert gw.outbox.stats().depth > 1000  # well over Mosquitto's default queue limit
    central.start()

    wait_for(lambda: len(set(collector.seqs("router-1"))) >= total, 60, "every reading")
    wait_for(lambda: len(set(collector.seqs("bp-1", "event"))) >= 20, 30, "every event")
    seqs = collector.seqs("router-1")
    assert set(seqs) == set(range(total))
    # At-least-once on the wire; (device, seq) is the storage key, so no reading is stored twice.
    wire_duplicates = sum(n - 1 for n in Counter(seqs).values())
    assert len(set(seqs)) == total, f"{wire_duplicates} wire duplicates"
    wait_for(lambda: gw.outbox.stats().depth == 0, 30, "outbox drained")
    devices.close()
    collector.close()


def _gateway_process(
    centre: str, local: MosquittoService, central: MosquittoService, data_dir: Path
) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    env.update(
        {
            "GRAMLINK_GATEWAY_PSEUDONYM_KEY": KEY,
            "GRAMLINK_GATEWAY_LOCAL_USERNAME": local.admin_user,
            "GRAMLINK_GATEWAY_LOCAL_PASSWORD": local.admin_password,
            "GRAMLINK_GATEWAY_UPLINK_USERNAME": central.admin_user,
            "GRAMLINK_GATEWAY_UPLINK_PASSWORD": central.admin_password,
        }
    )
    argv = [sys.executable, "-m", "gramlink", "gateway", "--centre", centre]
    argv += ["--local-url", local.url, "--uplink-url", central.url, "--data-dir", str(data_dir)]
    argv += ["--batch-max-age-ms", "100", "--backoff-max-s", "2", "--log-level", "warning"]
    return subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def test_sigkill_mid_flow_loses_nothing_acknowledged(
    local_broker: MosquittoService,
    mosquitto: MosquittoService,
    centre: str,
    tmp_path: Path,
) -> None:
    collector = Collector(mosquitto, centre).start()
    devices = Devices(local_broker, centre)
    proc = _gateway_process(centre, local_broker, mosquitto, tmp_path / "gw")
    try:
        wait_until_flowing(devices, collector, timeout=30)
        total = 4000
        sent = []
        for seq in range(total):
            sent.append(devices.publish("router-1", "telemetry", router_reading(seq)))
            if seq == total // 3:
                wait_for(lambda: len(collector.seqs("router-1")) > 100, 20, "flow under way")
                proc.send_signal(signal.SIGKILL)  # a power cut
                proc.wait(10)
        # Every reading the local broker acknowledged to the device must get through.
        wait_for(lambda: all(info.is_published() for info in sent), 20, "device PUBACKs")
        proc = _gateway_process(centre, local_broker, mosquitto, tmp_path / "gw")
        wait_for(lambda: len(set(collector.seqs("router-1"))) >= total, 60, "every reading")
        assert set(collector.seqs("router-1")) == set(range(total))
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(15)
    devices.close()
    collector.close()


def test_disk_budget_evicts_bulk_first_and_keeps_health_events(
    local_broker: MosquittoService,
    broker_factory: BrokerFactory,
    make_gateway: GatewayFactory,
    centre: str,
) -> None:
    central = broker_factory()
    central.stop()  # the uplink is down while the budget fills
    devices = Devices(local_broker, centre)
    gw = make_gateway(centre, local_broker, central, disk_budget_bytes=64 * 1024)
    wait_for(gw.local.connected.is_set, 10, "gateway on the local broker")
    # probes are health events: never evicted, not in the sums
    wait_until_received(devices, lambda: gw.local_in.received_total, "event", bp_event, 10)
    base = gw.local_in.received_total

    total, events = 2000, 50
    for seq in range(total):
        devices.publish("router-1", "telemetry", router_reading(seq))
        if seq % (total // events) == 0:
            devices.publish("bp-1", "event", bp_event(seq))
    wait_for(lambda: gw.local_in.received_total >= base + total + events, 30, "everything received")
    stats = gw.outbox.stats()
    assert stats.bytes <= 64 * 1024
    assert stats.dropped_total > 0

    # the gateway's own reading goes in while the uplink is down: a row added during the
    # drain may evict a row already sent (counted dropped though it arrives: the outbox
    # cannot know whether it did), which this count of loss would take for a loss
    gw.report_health()
    central.start()
    collector = Collector(central, centre).start()
    wait_for(lambda: collector.of(gw.settings.gateway_id), 30, "gateway health reading")
    wait_for(lambda: len(collector.of("bp-1", "event")) >= events, 30, "every event")
    wait_for(lambda: gw.outbox.stats().depth == 0, 30, "outbox drained")

    # Every health event kept; bulk telemetry evicted oldest first, and every eviction counted.
    assert collector.seqs("bp-1", "event") == list(range(0, total, total // events))
    routers = collector.seqs("router-1")
    assert routers == list(range(total - len(routers), total))
    assert len(routers) + gw.outbox.dropped_total == total
    health = collector.of(gw.settings.gateway_id)[-1].payload["metrics"]
    assert health["dropped_total"] >= stats.dropped_total > 0  # reported, never silent
    devices.close()
    collector.close()


def test_refused_uplink_credentials_stop_the_gateway_with_exit_4_and_a_hint(
    local_broker: MosquittoService, mosquitto: MosquittoService, centre: str, tmp_path: Path
) -> None:
    env = dict(os.environ)
    env.update(
        {
            "GRAMLINK_GATEWAY_PSEUDONYM_KEY": KEY,
            "GRAMLINK_GATEWAY_LOCAL_USERNAME": local_broker.admin_user,
            "GRAMLINK_GATEWAY_LOCAL_PASSWORD": local_broker.admin_password,
            "GRAMLINK_GATEWAY_UPLINK_USERNAME": f"{centre}-gw",  # the pre-2026-11-30 form
            "GRAMLINK_GATEWAY_UPLINK_PASSWORD": "not-the-password",
        }
    )
    argv = [sys.executable, "-m", "gramlink", "gateway", "--centre", centre]
    argv += ["--local-url", local_broker.url, "--uplink-url", mosquitto.url]
    argv += ["--data-dir", str(tmp_path / "gw")]
    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 4
    refusal = [line for line in result.stderr.splitlines() if "event=broker_refused" in line]
    assert len(refusal) == 1
    assert "link=uplink" in refusal[0]
    assert 'hint="provisioned logins are {centre}/{gateway}"' in refusal[0]
