"""Ingest over ``mqtts://`` (a real Mosquitto TLS listener, openssl-made certificates) and two
worker processes deliberately given one client id."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

from gramlink.services import InfluxService, MosquittoService
from gramlink.services.process import free_port
from ingest.app import Worker
from runtime.exits import ExitCode
from tests.factories import unique_id, wait_for
from tests.ingest.conftest import (
    Publisher,
    count,
    distinct_seqs,
    ingest_env,
    now_ms,
    worker_settings,
)
from tests.tls import Pki


def test_readings_cross_a_tls_listener_into_influxdb(
    pki: Pki,
    tls_mosquitto: MosquittoService,
    influx: InfluxService,
    start_worker,
) -> None:
    settings = worker_settings(
        tls_mosquitto, influx, mqtt_url=tls_mosquitto.tls_url, mqtt_ca_file=pki.ca
    )
    w = start_worker(settings)
    assert w.worker.subscriber.endpoint.tls
    centre = unique_id("c")
    pub = Publisher(tls_mosquitto)  # on the plain listener of the same broker
    n = pub.readings(centre, ["pw-1", "pw-2"], range(300), now_ms() - 60_000)
    n += pub.envelopes(centre, "gw-1", ["pw-3"], range(200), now_ms() - 60_000, per=50)
    pub.flush()
    pub.close()
    wait_for(lambda: count(influx, "power", centre) >= n, 60, "readings stored over TLS")
    assert len(distinct_seqs(influx, "power", centre)) == n


def test_a_broker_certificate_from_another_ca_stops_ingest_naming_the_ca_setting(
    pki: Pki,
    tls_mosquitto: MosquittoService,
    influx: InfluxService,
) -> None:
    settings = worker_settings(
        tls_mosquitto, influx, mqtt_url=tls_mosquitto.tls_url, mqtt_ca_file=pki.other_ca
    )
    worker = Worker(settings)
    code: list[int] = []
    thread = threading.Thread(target=lambda: code.append(worker.run()), daemon=True)
    thread.start()
    thread.join(30)
    assert code == [ExitCode.CONFIG]
    line = worker.fatal or ""
    assert "TLS certificate is not trusted" in line
    assert line.endswith("check GRAMLINK_INGEST_MQTT_CA_FILE")


def test_a_missing_ca_file_stops_ingest_at_start_with_one_line(
    tls_mosquitto: MosquittoService,
    influx: InfluxService,
    tmp_path: Path,
) -> None:
    settings = worker_settings(tls_mosquitto, influx, mqtt_url=tls_mosquitto.tls_url)
    env = {**ingest_env(settings), "GRAMLINK_INGEST_MQTT_CA_FILE": str(tmp_path / "none.pem")}
    done = subprocess.run(
        [sys.executable, "-m", "gramlink", "ingest"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == ExitCode.CONFIG
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "GRAMLINK_INGEST_MQTT_CA_FILE" in lines[0], done.stderr


def test_of_two_workers_with_one_client_id_the_newer_wins_and_the_older_exits_5(
    mosquitto: MosquittoService, influx: InfluxService, start_process
) -> None:
    settings = worker_settings(mosquitto, influx, metrics_port=free_port())
    older = start_process(settings)
    older.wait_ready()
    newer = start_process(settings.model_copy(update={"metrics_port": free_port()}))
    wait_for(lambda: older.proc.poll() is not None, 60, "the older worker stopped")
    assert older.proc.returncode == ExitCode.SESSION_TAKEN_OVER
    errors = [ln for ln in older.log.read_text().splitlines() if "level=ERROR" in ln]
    assert errors and "another process connected with the same client id" in errors[-1]
    assert "GRAMLINK_INGEST_CLIENT_ID" in errors[-1]
    newer.wait_ready()
    assert newer.proc.poll() is None
    centre = unique_id("c")
    pub = Publisher(mosquitto)
    n = pub.readings(centre, ["pw-1"], range(100), now_ms() - 60_000)
    pub.flush()
    pub.close()
    wait_for(lambda: count(influx, "power", centre) >= n, 30, "the newer one stores")
