"""Real gateway, real ingest worker, real InfluxDB, a central broker restarted with
SIGTERM: every reading is stored once, whether ingest or the gateway reconnects first."""

from __future__ import annotations

import time

import pytest

from contract.codec import encode
from contract.messages import telemetry
from contract.metrics import RouterMetrics
from gramlink.services import InfluxService, MosquittoService
from tests.conftest import BrokerFactory
from tests.factories import wait_for
from tests.gateway.conftest import GatewayFactory
from tests.gateway.sim import Devices
from tests.ingest.conftest import ThreadWorker, count, distinct_seqs, worker_settings

pytestmark = pytest.mark.slow
TS0 = int(time.time() * 1000) - 600_000


def router_reading(seq: int) -> bytes:
    metrics = RouterMetrics(uptime_s=seq, wan_up=True)
    return encode(telemetry("router", ts=TS0 + seq * 1000, seq=seq, metrics=metrics))


def test_central_broker_restart_with_ingest_down_loses_nothing(
    local_broker: MosquittoService,
    broker_factory: BrokerFactory,
    influx: InfluxService,
    make_gateway: GatewayFactory,
    centre: str,
) -> None:
    central = broker_factory()
    settings = worker_settings(central, influx, session_expiry_s=600)
    worker = ThreadWorker(settings)
    devices = Devices(local_broker, centre)
    gw = make_gateway(centre, local_broker, central, receipt_timeout_s=5.0)
    wait_for(lambda: gw.central.connected.is_set() and gw.local.connected.is_set(), 10, "up")
    try:
        for seq in range(50):
            devices.publish("router-1", "telemetry", router_reading(seq))
        wait_for(lambda: count(influx, "router", centre) >= 50, 30, "first readings stored")
        wait_for(lambda: gw.outbox.stats().depth == 0, 20, "receipted and deleted")

        # Ingest down, its session kept: the broker takes the batches (PUBACK delivered,
        # queued for the session) but nothing stores them, so they stay, unreceipted.
        assert worker.stop() == 0
        for seq in range(50, 80):
            devices.publish("router-1", "telemetry", router_reading(seq))
        wait_for(lambda: gw.outbox.stats().unreceipted >= 30, 20, "sent, not receipted")
        assert gw.outbox.stats().depth >= 30
        worker = ThreadWorker(settings)
        wait_for(lambda: gw.outbox.stats().depth == 0, 30, "stored, receipted, deleted")
        assert count(influx, "router", centre) == 80

        # Ingest down, then the central broker restarts: its shared subscription is gone.
        assert worker.stop() == 0
        central.stop()
        central.start()
        wait_for(gw.central.connected.is_set, 30, "gateway back")
        for seq in range(80, 120):
            devices.publish("router-1", "telemetry", router_reading(seq))
        wait_for(lambda: gw.outbox.rejected_total >= 1, 30, "batches answered 0x10")
        assert gw.outbox.stats().depth >= 40  # kept, not deleted
        rejected_before = gw.outbox.rejected_total

        worker = ThreadWorker(settings)  # subscribes again although the session is present
        wait_for(lambda: gw.outbox.stats().depth == 0, 60, "everything receipted")
        assert count(influx, "router", centre) == 120  # once each: no loss, no duplicate
        assert distinct_seqs(influx, "router", centre) == {("router-1", s) for s in range(120)}
        assert rejected_before >= 1

        # The central broker restarts again with ingest up: both reconnect, ingest
        # subscribes again, batches sent afterwards are stored.
        central.stop()
        central.start()
        wait_for(lambda: worker.worker.subscriber.subscribed, 40, "ingest subscribed again")
        wait_for(gw.central.connected.is_set, 30, "gateway back")
        for seq in range(120, 160):
            devices.publish("router-1", "telemetry", router_reading(seq))
        wait_for(lambda: count(influx, "router", centre) >= 160, 60, "after-restart readings")
        wait_for(lambda: gw.outbox.stats().depth == 0, 30, "receipted again")
        assert count(influx, "router", centre) == 160
    finally:
        worker.stop()
        devices.close()
