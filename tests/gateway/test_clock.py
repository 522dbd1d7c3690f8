"""Clock sanity end to end: gateway, central broker, ingest worker, InfluxDB.

The gateway's wall clock is moved through its test hook
(``GRAMLINK_GATEWAY_CLOCK_OFFSET_FILE``: ``<offset_ms> [synced|unsynced]``), never
the system's: it boots two days behind and unsynced, NTP "steps" it during an
uplink outage, and every stored reading ends with a plausible time; the
readings whose device clock is wrong are kept, flagged, with their own time.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from contract.codec import encode
from contract.messages import telemetry
from contract.metrics import PulseOximeterMetrics, RouterMetrics
from contract.storage import SEQ_SLOTS
from gramlink.services import InfluxService, MosquittoService
from tests.conftest import BrokerFactory
from tests.factories import wait_for
from tests.gateway.conftest import GatewayFactory
from tests.gateway.sim import Devices
from tests.ingest.conftest import ThreadWorker, count, rows, worker_settings

pytestmark = pytest.mark.slow
DAY_MS = 86_400_000
HOUR_MS = 3_600_000


def now_ms() -> int:
    return int(time.time() * 1000)


def router(seq: int, ts: int) -> bytes:
    return encode(telemetry("router", ts=ts, seq=seq, metrics=RouterMetrics(uptime_s=seq)))


def oximeter(seq: int, ts: int) -> bytes:
    metrics = PulseOximeterMetrics(spo2_pct=97.0, pulse_bpm=72.0)
    return encode(telemetry("pulse_oximeter", ts=ts, seq=seq, metrics=metrics))


def points(influx: InfluxService, measurement: str, centre: str) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for row in rows(influx, f"SELECT * FROM \"{measurement}\" WHERE centre='{centre}'"):
        found.setdefault(str(row["device"]), []).append(row)
    return found


def test_a_device_clock_at_1970_is_stored_flagged_at_receive_time_not_lost(
    local_broker: MosquittoService,
    mosquitto: MosquittoService,
    influx: InfluxService,
    make_gateway: GatewayFactory,
    centre: str,
) -> None:
    worker = ThreadWorker(worker_settings(mosquitto, influx))
    devices = Devices(local_broker, centre)
    gw = make_gateway(centre, local_broker, mosquitto)
    try:
        wait_for(lambda: gw.central.connected.is_set() and gw.local.connected.is_set(), 10, "up")
        before = now_ms()
        good_ts = before - 60_000
        devices.publish("oxi-1970", "telemetry", oximeter(7, 0))
        devices.publish("oxi-good", "telemetry", oximeter(8, good_ts))
        wait_for(lambda: count(influx, "health", centre) >= 2, 30, "both stored")
        after = now_ms()
        stored = points(influx, "health", centre)
        (flagged,) = stored["oxi-1970"]
        assert flagged["device_ts"] == 0
        assert flagged["clock_suspect"] is True
        assert flagged["spo2_pct"] == 97.0
        assert before * 1_000_000 <= flagged["time"] <= after * 1_000_000  # its receive time
        (good,) = stored["oxi-good"]
        assert good["time"] == good_ts * SEQ_SLOTS + 8  # the device's own time
        assert good["clock_suspect"] is None and good["device_ts"] is None

        # Counted, and shown in the gateway's health reading.
        assert gw.outbox.stats().clock_suspect_total == 1
        gw.report_health()
        wait_for(lambda: count(influx, "gateway", centre, "queue_depth") >= 1, 30, "health")
        (health,) = points(influx, "gateway", centre)[gw.settings.gateway_id]
        assert health["clock_suspect_total"] == 1
    finally:
        devices.close()
        worker.stop()


def test_a_clock_step_of_two_days_during_an_outage_leaves_every_reading_plausible(
    local_broker: MosquittoService,
    broker_factory: BrokerFactory,
    influx: InfluxService,
    make_gateway: GatewayFactory,
    centre: str,
    tmp_path: Path,
) -> None:
    hook = tmp_path / "clock-offset"
    hook.write_text(f"{-2 * DAY_MS} unsynced")  # booted with the time it shut down at
    central = broker_factory()
    worker = ThreadWorker(worker_settings(central, influx, session_expiry_s=600))
    devices = Devices(local_broker, centre)
    gw = make_gateway(centre, local_broker, central, clock_offset_file=hook)
    try:
        wait_for(lambda: gw.central.connected.is_set() and gw.local.connected.is_set(), 10, "up")
        central.stop()  # the uplink goes down
        wait_for(lambda: not gw.central.connected.is_set(), 10, "uplink down")
        start = now_ms()
        # Devices with good clocks (two days ahead of the gateway's), one at 1970,
        # one five hours ahead; and the gateway's own health reading.
        for seq in range(10):
            devices.publish("router-1", "telemetry", router(seq, start - 10_000 + seq * 1000))
        devices.publish("oxi-1", "telemetry", oximeter(0, 0))
        ahead_ts = start + 5 * HOUR_MS
        devices.publish("router-ahead", "telemetry", router(1, ahead_ts))
        gw.report_health()
        wait_for(lambda: gw.outbox.stats().depth >= 13, 10, "stored during the outage")
        assert gw.outbox.stats().clock_suspect_total == 1  # only 1970: the rest can't be judged

        hook.write_text("0 synced")  # NTP steps the clock two days forward
        wait_for(lambda: gw.local_in.clock_steps == 1, 10, "the step noticed")
        # five hours ahead, once synced (re-judged just after the step is counted)
        wait_for(lambda: gw.outbox.stats().clock_suspect_total == 2, 10, "re-judged")
        for seq in range(10, 15):
            devices.publish("router-1", "telemetry", router(seq, now_ms()))
        devices.publish("oxi-1", "telemetry", oximeter(1, 0))
        wait_for(lambda: gw.outbox.stats().depth >= 19, 10, "stored after the step")

        central.start()  # the uplink comes back
        wait_for(lambda: gw.outbox.stats().depth == 0, 60, "stored centrally and receipted")
        wait_for(lambda: count(influx, "router", centre) >= 16, 30, "router readings")
        end = now_ms()
        plausible = range((start - HOUR_MS) * SEQ_SLOTS, (end + 60_000) * SEQ_SLOTS)

        routers = points(influx, "router", centre)
        assert sorted(p["seq"] for p in routers["router-1"]) == list(range(15))
        for p in routers["router-1"]:  # good device clocks: stored at the device's time
            assert p["time"] in plausible and p["clock_suspect"] is None
        (ahead,) = routers["router-ahead"]
        assert ahead["time"] in plausible  # at its (re-based) receive time
        assert (ahead["clock_suspect"], ahead["device_ts"]) == (True, ahead_ts)
        oxis = points(influx, "health", centre)["oxi-1"]
        assert len(oxis) == 2
        for p in oxis:
            assert p["time"] in plausible and p["clock_suspect"] is True and p["device_ts"] == 0
        (health,) = points(influx, "gateway", centre)[gw.settings.gateway_id]
        assert health["time"] in plausible  # its own time moved with the step
        assert gw.outbox.stats().clock_suspect_total == 3
    finally:
        devices.close()
        worker.stop()
