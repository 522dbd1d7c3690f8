"""Worker processes: the same readings as one process, stats summed, behind the Fleet API."""

from __future__ import annotations

import os
import subprocess
import sys

from firmware_sim.fleet import Fleet, FleetConfig
from firmware_sim.workers import WorkerFleet
from gramlink.services import MosquittoService
from tests.factories import Received, admin_client, close, unique_id, wait_for
from tests.firmware_sim.conftest import MONDAY_10_IST


def mine(got: Received, prefix: str) -> set[bytes]:
    with got.lock:
        return {m.topic.encode() + m.payload for m in got.messages if prefix in m.topic}


def test_two_worker_processes_send_what_one_process_sends(mosquitto: MosquittoService) -> None:
    prefix = unique_id("wk") + "-"
    config = FleetConfig(
        port=mosquitto.port,
        username=mosquitto.admin_user,
        password=mosquitto.admin_password,
        centres=3,
        centre_prefix=prefix,
        mode="centre",
        interval_s=300,
        start_ms=MONDAY_10_IST,
        backfill_end_ms=MONDAY_10_IST + 6 * 3_600_000,
        will_delay_s=1,
    )
    payloads: list[set[bytes]] = []
    for fleet in (Fleet(config), WorkerFleet(config, workers=2)):
        got = Received()
        client = admin_client(mosquitto)
        client.on_message = got.on_message
        client.subscribe("gl/v1/+/+/telemetry", qos=1)
        client.subscribe("gl/v1/+/+/event", qos=1)
        try:
            stats = fleet.run()
            assert stats.readings > 3 * 7 * 60 and stats.dropped == 0 and stats.errors == 0
            assert stats.completed == stats.messages
            wait_for(lambda g=got, n=stats.readings: len(mine(g, prefix)) >= n, 15, "every reading")
            payloads.append(mine(got, prefix))
        finally:
            close(client)
    assert payloads[0] == payloads[1]


def test_the_command_runs_worker_processes_and_refuses_raw_per_device(
    mosquitto: MosquittoService,
) -> None:
    env = dict(
        {k: v for k, v in os.environ.items() if not k.startswith("GRAMLINK_")},
        GRAMLINK_SIM_MQTT_USERNAME=mosquitto.admin_user,
        GRAMLINK_SIM_MQTT_PASSWORD=mosquitto.admin_password,
    )
    base = [sys.executable, "-m", "gramlink", "sim", "--mqtt-url", mosquitto.url]
    prefix = unique_id("wc") + "-"
    done = subprocess.run(
        [*base, "--mode", "centre", "--workers", "2", "--centres", "2", "--centre-prefix", prefix,
         "--backfill-days", "0.1", "--interval", "300"],
        env=env, capture_output=True, text=True, timeout=90,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "2 process(es)" in done.stderr
    sent = int(done.stderr.rsplit("sent=", 1)[1].split()[0])
    assert sent >= 2 * 7 * 28, done.stderr  # 2.4 h at 300 s, 14 devices
    refused = subprocess.run(
        [*base, "--mode", "device", "--client", "raw"],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines() == [
        "error: GRAMLINK_SIM_CLIENT: raw is for per-centre mode (--mode centre) only"
    ]
