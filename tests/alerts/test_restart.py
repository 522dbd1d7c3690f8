"""``gramlink alerts`` as a process of its own, killed with SIGKILL and started again:
nothing notified twice, nothing pending or firing forgotten, nothing that arrived while
it was down lost (its persistent session kept it)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from api.db.models import Alert
from gramlink.services import InfluxService, MosquittoService
from tests.alerts.conftest import Publisher, Registry, alerts_login, now_ms
from tests.factories import unique_id, wait_for

REPO = Path(__file__).resolve().parents[2]
MINUTE = 60_000
PATIENT = "cd" * 32


class EngineProcess:
    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env = env
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        out = self.log.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gramlink", "alerts"],
            cwd=REPO,
            env=self.env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        out.close()

    def kill(self) -> None:
        assert self.proc is not None and self.proc.poll() is None, self.log.read_text()[-2000:]
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(15)


@pytest.fixture
def engine_process(
    mosquitto: MosquittoService, influx: InfluxService, registry: Registry, tmp_path: Path
) -> Iterator[EngineProcess]:
    username, password = alerts_login(mosquitto)
    env = {
        **os.environ,
        "GRAMLINK_ALERTS_DB_URL": registry.url,
        "GRAMLINK_ALERTS_MQTT_URL": mosquitto.url,
        "GRAMLINK_ALERTS_MQTT_USERNAME": username,
        "GRAMLINK_ALERTS_MQTT_PASSWORD": password,
        "GRAMLINK_ALERTS_CLIENT_ID": unique_id("alerts"),
        "GRAMLINK_ALERTS_SESSION_EXPIRY_S": "300",
        "GRAMLINK_ALERTS_INFLUX_URL": influx.url,
        "GRAMLINK_ALERTS_INFLUX_DB": influx.database,
        "GRAMLINK_ALERTS_INFLUX_PASSWORD": influx.admin_password,
        "GRAMLINK_ALERTS_TICK_S": "0.2",
    }
    process = EngineProcess(env, tmp_path / "alerts.log")
    yield process
    assert process.stop() in (None, 0, -9), process.log.read_text()[-2000:]


@pytest.mark.slow
def test_killed_with_sigkill_it_neither_notifies_twice_nor_forgets(
    registry: Registry, publisher: Publisher, engine_process: EngineProcess
) -> None:
    centre = registry.centre()
    power = registry.device(centre, "power")
    oximeter = registry.device(centre, "pulse_oximeter")
    battery = registry.rule("battery-low", centre)  # < 20 % for 10 min
    spo2 = registry.rule("spo2-low", centre)
    registry.channel()
    engine_process.start()

    def first() -> Alert | None:
        found = [a for a in registry.alerts(centre, battery) if a.device == power]
        return found[0] if found else None

    t0 = now_ms()

    # the clinical alert fires; sent until the engine's subscription is up
    def clinical_fired() -> bool:
        if registry.alert(centre, spo2) is None:
            publisher.measurement(
                centre, oximeter, "pulse_oximeter", t0, spo2_pct=85, patient_ref=PATIENT
            )
            return False
        return True

    wait_for(clinical_fired, 30, "the engine up and the clinical alert firing")
    for i, soc in enumerate([30, 19, 18, 17]):  # pending from minute 1
        publisher.reading(centre, power, "power", t0 + i * MINUTE, battery_soc_pct=soc)
    wait_for(lambda: registry.alert(centre, battery, "pending") is not None, 10, "pending")
    wait_for(lambda: len(registry.events(centre)) == 1, 5, "the clinical notification")

    # a burst from another power unit (its battery low from minute 50, firing at 60),
    # and the kill right after it reached the broker: mid-round, some of it unacknowledged
    second = registry.device(centre, "power")
    for i in range(200):
        soc = 30 if i < 50 else 10
        publisher.reading(centre, second, "power", t0 + i * MINUTE, battery_soc_pct=soc)
    engine_process.kill()
    # while it is down: the battery stays low past 10 min, the patient's next reading is low
    for i in range(4, 13):
        publisher.reading(centre, power, "power", t0 + i * MINUTE, battery_soc_pct=15)
    publisher.measurement(
        centre, oximeter, "pulse_oximeter", t0 + 5 * MINUTE, spo2_pct=86, patient_ref=PATIENT
    )
    pending = first()
    assert pending is not None and pending.state == "pending"  # nothing evaluated meanwhile

    engine_process.start()
    wait_for(lambda: (first() or pending).state == "firing", 30, "the pending alert fires")
    alert = first()
    assert alert is not None and alert.started_ms == t0 + MINUTE
    assert alert.fired_ms == t0 + 11 * MINUTE  # the pending start survived the kill
    wait_for(lambda: (registry.alert(centre, spo2) or alert).count == 2, 10, "repeat folded")

    def burst_done() -> bool:
        found = [a for a in registry.alerts(centre, battery) if a.device == second]
        return bool(found) and found[0].last_seen_ms == t0 + 199 * MINUTE

    wait_for(burst_done, 30, "the burst evaluated to its end")
    [burst] = [a for a in registry.alerts(centre, battery) if a.device == second]
    # every reading counted once: the firing one at minute 60 and 139 repeats, none replayed
    assert burst.fired_ms == t0 + 60 * MINUTE and burst.count == 140
    assert sorted(registry.events(centre)) == sorted(
        [(spo2, "firing"), (battery, "firing"), (battery, "firing")]
    )
    assert len(registry.alerts(centre)) == 3
