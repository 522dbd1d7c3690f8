"""Ingest fixtures: a worker in a thread, or as a subprocess (``python -m gramlink ingest``)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
import pytest

from contract.codec import encode, encode_batch_parts
from contract.messages import State, telemetry
from contract.metrics import PowerMetrics
from contract.topics import Channel, topic
from gramlink.broker_accounts import DynsecSession, ensure_account, ingest_account, new_password
from gramlink.services import InfluxService, MosquittoService
from gramlink.services.process import free_port
from ingest.app import Worker
from ingest.settings import IngestSettings, load_settings
from tests.factories import admin_client, close, unique_id, wait_for

REPO = Path(__file__).resolve().parents[2]


_LOGINS: dict[tuple[Path, str], tuple[str, str]] = {}


def ingest_login(broker: MosquittoService, group: str) -> tuple[str, str]:
    """An ingest service account for ``group`` (exactly its rights, as ``gramlink stack up``
    makes one), created once per broker and group: workers run as it, never as the admin."""
    key = (broker.home, group)
    if key not in _LOGINS:
        username, password = f"ingest-{group}", new_password()
        with DynsecSession(broker.url, broker.admin_user, broker.admin_password) as session:
            ensure_account(session, ingest_account(username, group), password)
        _LOGINS[key] = (username, password)
    return _LOGINS[key]


def worker_settings(
    broker: MosquittoService, influx: InfluxService, **overrides: object
) -> IngestSettings:
    group = str(overrides.get("share_group") or unique_id("g"))
    username, password = ingest_login(broker, group)
    values: dict[str, object] = {
        "mqtt_url": f"mqtt://{broker.bind}:{broker.port}",
        "mqtt_username": username,
        "mqtt_password": password,
        "influx_url": influx.url,
        "influx_database": influx.database,
        "influx_username": influx.admin_user,
        "influx_password": influx.admin_password,
        "client_id": unique_id("ingest"),
        "share_group": group,
        "metrics_port": 0,
        "pipeline_interval_s": 0,
        "batch_age_ms": 50,
        "retry_initial_s": 0.2,
        "retry_max_s": 2.0,
    }
    values.update(overrides)
    return load_settings(**values)


class ThreadWorker:
    """A worker running in this process (fast tests); ``stop()`` ends it like SIGTERM."""

    def __init__(self, settings: IngestSettings) -> None:
        self.worker = Worker(settings)
        self.exit_code: int | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        wait_for(self._subscribed, 10, "worker connected")

    def _subscribed(self) -> bool:
        return self.worker.subscriber.subscribed

    def _run(self) -> None:
        self.exit_code = self.worker.run()

    def stop(self) -> int | None:
        self.worker.stop.set()
        self.thread.join(30)
        return self.exit_code


@pytest.fixture
def start_worker() -> Iterator[Callable[[IngestSettings], ThreadWorker]]:
    started: list[ThreadWorker] = []

    def make(settings: IngestSettings) -> ThreadWorker:
        w = ThreadWorker(settings)
        started.append(w)
        return w

    yield make
    for w in started:
        w.stop()


def ingest_env(settings: IngestSettings) -> dict[str, str]:
    """``settings`` as the ``GRAMLINK_INGEST_*`` variables of a ``gramlink ingest`` process."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    for name, value in settings.model_dump().items():
        if value is None:
            continue
        secret = getattr(value, "get_secret_value", None)
        env[f"GRAMLINK_INGEST_{name.upper()}"] = str(secret() if secret else value)
    return env


def run_ingest(settings: IngestSettings) -> subprocess.CompletedProcess[str]:
    """``gramlink ingest`` to its end (for the ways it stops at start)."""
    return subprocess.run(
        [sys.executable, "-m", "gramlink", "ingest"],
        cwd=REPO,
        env=ingest_env(settings),
        capture_output=True,
        text=True,
        timeout=60,
    )


class ProcessWorker:
    """``python -m gramlink ingest`` as a child process, configured by environment."""

    def __init__(self, settings: IngestSettings, log: Path) -> None:
        env = {**os.environ, **ingest_env(settings)}
        self.metrics_port = settings.metrics_port
        self.log = log
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "gramlink", "ingest"],
                cwd=REPO,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def metric(self, name: str) -> float | None:
        try:
            text = httpx.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=2).text
        except httpx.HTTPError:
            return None
        for line in text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        return None

    def wait_ready(self) -> None:
        wait_for(lambda: self.metric("gramlink_ingest_subscribed") == 1.0, 20, "worker subscribed")

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(10)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode


@pytest.fixture
def start_process(tmp_path: Path) -> Iterator[Callable[[IngestSettings], ProcessWorker]]:
    started: list[ProcessWorker] = []

    def make(settings: IngestSettings) -> ProcessWorker:
        p = ProcessWorker(settings, tmp_path / f"worker-{len(started)}.log")
        started.append(p)
        return p

    yield make
    for p in started:
        p.stop()


# --- publishing and reading back ---------------------------------------------------


def publish_births(broker: MosquittoService, centre: str, devices: dict[str, str]) -> None:
    client = admin_client(broker)
    for device, model in devices.items():
        state = State(online=True, kind="power", model=model, fw="1.0")
        client.publish(
            topic(centre, device, Channel.STATE), encode(state), qos=1, retain=True
        ).wait_for_publish(5)
    close(client)


def power_reading(seq: int, ts: int) -> bytes:
    return encode(
        telemetry(
            "power", ts=ts, seq=seq, metrics=PowerMetrics(pv_power_w=float(seq), grid_present=True)
        )
    )


def now_ms() -> int:
    return int(time.time() * 1000)


class Publisher:
    """A QoS 1 publisher with bounded in-flight; ``flush()`` waits for every PUBACK."""

    def __init__(self, broker: MosquittoService) -> None:
        self.client = admin_client(broker, client_id=unique_id("pub"))
        self.infos: list[mqtt.MQTTMessageInfo] = []

    def publish(self, topic_: str, payload: bytes) -> None:
        self.infos.append(self.client.publish(topic_, payload, qos=1))

    def readings(self, centre: str, devices: list[str], seqs: range, ts0: int) -> int:
        n = 0
        for seq in seqs:
            for device in devices:
                self.publish(
                    topic(centre, device, Channel.TELEMETRY), power_reading(seq, ts0 + seq)
                )
                n += 1
        return n

    def envelopes(
        self,
        centre: str,
        gw: str,
        devices: list[str],
        seqs: range,
        ts0: int,
        per: int = 100,
        model: str | None = None,
    ) -> int:
        """Readings in envelopes of ``per`` records, each record stamped with ``model``."""
        records = [
            ("telemetry", device, power_reading(seq, ts0 + seq), ts0, model)
            for seq in seqs
            for device in devices
        ]
        for i in range(0, len(records), per):
            self.publish(
                topic(centre, gw, Channel.GATEWAY_BATCH),
                encode_batch_parts(gw, i, records[i : i + per]),
            )
        return len(records)

    def flush(self, timeout: float = 60) -> None:
        wait_for(lambda: all(i.is_published() for i in self.infos), timeout, "PUBACKs")

    def close(self) -> None:
        close(self.client)


def count(influx: InfluxService, measurement: str, centre: str, field: str = "seq") -> int:
    body = influx.query(
        f'SELECT count("{field}") FROM "{measurement}" WHERE centre=\'{centre}\'',
        database=influx.database,
    )
    series = body["results"][0].get("series")
    return int(series[0]["values"][0][1]) if series else 0


def rows(influx: InfluxService, q: str, database: str | None = None) -> list[dict[str, object]]:
    body = influx.query(q, database=database or influx.database)
    out: list[dict[str, object]] = []
    for series in body["results"][0].get("series", []):
        for values in series.get("values", []):
            row = dict(zip(series["columns"], values, strict=True))
            row.update(series.get("tags", {}))
            out.append(row)
    return out


def distinct_seqs(influx: InfluxService, measurement: str, centre: str) -> set[tuple[str, int]]:
    return {
        (str(r["device"]), int(r["seq"]))  # type: ignore[call-overload]
        for r in rows(
            influx,
            f"SELECT seq, device FROM \"{measurement}\" WHERE centre='{centre}'",
        )
    }


def free_metrics_port() -> int:
    return free_port()
