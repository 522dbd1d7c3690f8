"""Fleets against a real Mosquitto: contract messages, births, commands, OTA, Last Will."""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from contract.codec import decode, encode
from contract.messages import Command, Twin
from contract.topics import Channel, Topic, centre_subtree, topic
from gramlink.services import MosquittoService
from tests.factories import Received, admin_client, close, unique_id, wait_for
from tests.firmware_sim.conftest import FleetFactory


def watch(broker: MosquittoService, centre: str) -> tuple[mqtt.Client, Received]:
    received = Received()
    client = admin_client(broker)
    client.on_message = received.on_message
    client.subscribe(centre_subtree(centre), qos=1)
    return client, received


def arrived(received: Received, channel: Channel) -> int:
    """How many messages of ``channel`` arrived, by topic alone: cheap enough to poll
    (decoding thousands every 20 ms starves paho's network thread of the GIL)."""
    suffix = "/" + channel.value
    with received.lock:
        return sum(m.topic.endswith(suffix) for m in received.messages)


def decoded(received: Received, channel: Channel, device: str | None = None) -> list[object]:
    with received.lock:
        msgs = list(received.messages)
    out = []
    for m in msgs:
        t = Topic.parse(m.topic)
        if t.channel is channel and (device is None or t.device == device):
            out.append(decode(channel, m.payload))
    return out


def test_every_kind_publishes_contract_messages_with_births(
    mosquitto: MosquittoService, make_fleet: FleetFactory
) -> None:
    centre = unique_id("fc")
    client, got = watch(mosquitto, centre)
    try:
        fleet = make_fleet(centre_ids=(centre,), accelerate=600, interval_s=60)
        kinds = {d.kind.value for d in fleet.devices.values()}
        wait_for(
            lambda: {m.kind for m in decoded(got, Channel.TELEMETRY)} == kinds,  # type: ignore[attr-defined]
            20,
            "telemetry from every kind",
        )
        wait_for(
            lambda: any(
                getattr(e, "name", "") == "measurement" for e in decoded(got, Channel.EVENT)
            ),
            20,
            "a measurement",
        )
        births = decoded(got, Channel.STATE)
        assert {b.kind for b in births if b.online} == kinds  # type: ignore[attr-defined]
        for device_id in fleet.devices:
            seqs = [
                m.seq
                for m in decoded(got, Channel.TELEMETRY, device_id)
                + decoded(got, Channel.EVENT, device_id)
            ]  # type: ignore[attr-defined]
            assert sorted(seqs) == sorted(set(seqs)), "sequence numbers repeat"
        measurement = next(e for e in decoded(got, Channel.EVENT) if e.name == "measurement")  # type: ignore[attr-defined]
        assert measurement.metrics.patient_id and measurement.metrics.battery_pct is not None  # type: ignore[attr-defined]
        fleet.stop()
        wait_for(
            lambda: all(not s.online for s in decoded(got, Channel.STATE)[-7:]),  # type: ignore[attr-defined]
            10,
            "offline states",
        )
    finally:
        close(client)


def send(client: mqtt.Client, centre: str, device: str, cmd: Command) -> None:
    client.publish(topic(centre, device, Channel.CMD), encode(cmd), qos=1).wait_for_publish(5)


def acks(got: Received, device: str, cmd_id: str) -> list[object]:
    return [a for a in decoded(got, Channel.CMD_ACK, device) if a.id == cmd_id]  # type: ignore[attr-defined]


def test_commands_round_trip_reboot_interval_identify_expired_and_twin(
    mosquitto: MosquittoService, make_fleet: FleetFactory
) -> None:
    centre = unique_id("cc")
    client, got = watch(mosquitto, centre)
    try:
        fleet = make_fleet(centre_ids=(centre,), devices_per_centre=1, interval_s=3600)
        router = f"{centre}-rtr1"
        wait_for(lambda: decoded(got, Channel.STATE, router), 10, "birth")
        send(client, centre, router, Command(id="r1", name="reboot"))
        wait_for(
            lambda: any(a.status == "done" for a in acks(got, router, "r1")), 10, "reboot done"
        )  # type: ignore[attr-defined]
        assert any(e.name == "reboot" for e in decoded(got, Channel.EVENT, router))  # type: ignore[attr-defined]
        # a reboot drops the device's own connection and comes back with a new birth
        wait_for(lambda: fleet.stats().reconnects == 1, 10, "reconnect after reboot")
        births = [s for s in decoded(got, Channel.STATE, router) if s.online]  # type: ignore[attr-defined]
        assert len(births) == 2

        send(client, centre, router, Command(id="i1", name="set_interval", args={"interval_s": 1}))
        wait_for(
            lambda: any(a.status == "done" for a in acks(got, router, "i1")), 10, "interval done"
        )  # type: ignore[attr-defined]
        wait_for(
            lambda: len(decoded(got, Channel.TELEMETRY, router)) >= 2, 10, "telemetry every second"
        )

        send(client, centre, router, Command(id="bad", name="set_interval", args={"interval_s": 0}))
        send(
            client,
            centre,
            router,
            Command(id="old", name="identify", expires=int(time.time() * 1000) - 1000),
        )
        send(client, centre, router, Command(id="x1", name="self_destruct"))
        wait_for(
            lambda: (
                acks(got, router, "bad") and acks(got, router, "old") and acks(got, router, "x1")
            ),
            10,
            "acks",
        )
        assert acks(got, router, "old")[-1].detail == "expired"  # type: ignore[attr-defined]
        assert acks(got, router, "bad")[-1].status == "failed"  # type: ignore[attr-defined]
        assert acks(got, router, "x1")[-1].status == "failed"  # type: ignore[attr-defined]

        client.publish(
            topic(centre, router, Channel.TWIN_DESIRED),
            encode(Twin(version=3, config={"interval_s": 5, "led": True})),
            qos=1,
            retain=True,
        )
        wait_for(lambda: decoded(got, Channel.TWIN_REPORTED, router), 10, "twin reported")
        reported = decoded(got, Channel.TWIN_REPORTED, router)[-1]
        assert reported.version == 3 and reported.config == {"interval_s": 5, "led": True}  # type: ignore[attr-defined]
        client.publish(
            topic(centre, router, Channel.TWIN_DESIRED), b"", qos=1, retain=True
        )  # clear
    finally:
        close(client)


@pytest.fixture
def firmware_server(tmp_path: Path) -> Iterator[tuple[str, str]]:
    blob = os.urandom(300_000)
    (tmp_path / "fw-2.0.0.bin").write_bytes(blob)

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, directory=str(tmp_path), **kwargs)  # type: ignore[arg-type]

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield (
        f"http://127.0.0.1:{server.server_address[1]}/fw-2.0.0.bin",
        hashlib.sha256(blob).hexdigest(),
    )
    server.shutdown()
    server.server_close()


def test_ota_switches_version_with_good_hash_and_keeps_old_with_bad(
    mosquitto: MosquittoService, make_fleet: FleetFactory, firmware_server: tuple[str, str]
) -> None:
    url, digest = firmware_server
    centre = unique_id("oc")
    client, got = watch(mosquitto, centre)
    try:
        make_fleet(centre_ids=(centre,), devices_per_centre=3, interval_s=3600)
        bp = f"{centre}-bp1"
        wait_for(lambda: decoded(got, Channel.STATE, bp), 10, "birth")
        bad = {"url": url, "sha256": "0" * 64, "version": "2.0.0"}
        send(client, centre, bp, Command(id="ota-bad", name="ota", args=bad))
        wait_for(
            lambda: any(a.status == "failed" for a in acks(got, bp, "ota-bad")),
            15,
            "bad hash fails",
        )  # type: ignore[attr-defined]
        assert "sha256" in acks(got, bp, "ota-bad")[-1].detail  # type: ignore[attr-defined]
        assert decoded(got, Channel.STATE, bp)[-1].fw == "1.0.0"  # type: ignore[attr-defined]

        good = {"url": url, "sha256": digest, "version": "2.0.0"}
        send(client, centre, bp, Command(id="ota-ok", name="ota", args=good))
        wait_for(lambda: any(a.status == "done" for a in acks(got, bp, "ota-ok")), 15, "ota done")  # type: ignore[attr-defined]
        statuses = [a.status for a in acks(got, bp, "ota-ok")]  # type: ignore[attr-defined]
        assert statuses[0] == "accepted" and "in_progress" in statuses
        assert any(a.progress_pct for a in acks(got, bp, "ota-ok"))  # type: ignore[attr-defined]
        wait_for(lambda: decoded(got, Channel.STATE, bp)[-1].fw == "2.0.0", 10, "new fw in state")  # type: ignore[attr-defined]
    finally:
        close(client)


def test_last_will_fires_when_a_cut_device_stays_away(
    mosquitto: MosquittoService, make_fleet: FleetFactory
) -> None:
    centre = unique_id("wc")
    client, got = watch(mosquitto, centre)
    try:
        fleet = make_fleet(centre_ids=(centre,), devices_per_centre=2, interval_s=3600)
        pwr = f"{centre}-pwr1"
        wait_for(lambda: decoded(got, Channel.STATE, pwr), 10, "birth")
        fleet.cut(pwr, offline_s=4)
        wait_for(lambda: decoded(got, Channel.STATE, pwr)[-1].online is False, 10, "Last Will")  # type: ignore[attr-defined]
        assert decoded(got, Channel.STATE, f"{centre}-rtr1")[-1].online is True  # type: ignore[attr-defined]
        wait_for(lambda: decoded(got, Channel.STATE, pwr)[-1].online is True, 20, "back online")  # type: ignore[attr-defined]
    finally:
        close(client)


def test_last_will_fires_when_the_sim_process_is_killed(mosquitto: MosquittoService) -> None:
    prefix = unique_id("kc")
    client, got = watch(mosquitto, f"{prefix}001")
    env = dict(
        os.environ,
        GRAMLINK_SIM_MQTT_USERNAME=mosquitto.admin_user,
        GRAMLINK_SIM_MQTT_PASSWORD=mosquitto.admin_password,
    )
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gramlink",
            "sim",
            "--mqtt-url",
            mosquitto.url,
            "--centre-prefix",
            prefix,
            "--centres",
            "1",
            "--devices-per-centre",
            "2",
            "--will-delay",
            "1",
            "--interval",
            "3600",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        rtr = f"{prefix}001-rtr1"
        wait_for(lambda: bool(decoded(got, Channel.STATE, rtr)), 20, "birth from the process")
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        wait_for(
            lambda: decoded(got, Channel.STATE, rtr)[-1].online is False, 15, "Last Will after kill"
        )  # type: ignore[attr-defined]
    finally:
        if proc.poll() is None:
            proc.kill()
        close(client)


def test_centre_mode_backfill_publishes_a_past_day_fast(
    mosquitto: MosquittoService, make_fleet: FleetFactory
) -> None:
    centre = unique_id("bc")
    client, got = watch(mosquitto, centre)
    try:
        from tests.firmware_sim.conftest import MONDAY_10_IST

        fleet = make_fleet(
            start=False,
            centre_ids=(centre,),
            mode="centre",
            interval_s=300,
            backfill_end_ms=MONDAY_10_IST + 86_400_000,
        )
        stats = fleet.run()
        assert stats.readings >= 7 * 288 and stats.dropped == 0
        wait_for(lambda: arrived(got, Channel.TELEMETRY) >= 7 * 288, 60, "all readings")
        ts = [m.ts for m in decoded(got, Channel.TELEMETRY)]  # type: ignore[attr-defined]
        assert len(ts) >= 7 * 288
        assert min(ts) >= MONDAY_10_IST and max(ts) < MONDAY_10_IST + 86_400_000
        json.dumps(stats.line())
    finally:
        close(client)
