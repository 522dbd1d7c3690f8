"""The raw MQTT v5 client of per-centre mode (``mqttlink.session``): commands, cuts, windows."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from contract.messages import Command
from contract.topics import Channel
from firmware_sim.rawlink import RawLink
from gramlink.services import MosquittoService
from gramlink.services.process import free_port
from mqttlink.endpoint import TlsFiles
from tests.factories import close, unique_id, wait_for
from tests.firmware_sim.conftest import MONDAY_10_IST, FleetFactory
from tests.firmware_sim.test_fleet import acks, arrived, decoded, send, watch
from tests.ingest.test_mqtt_consumer import FreezingProxy
from tests.tls import Pki


def test_centre_link_runs_commands_and_loses_nothing_across_a_cut(
    mosquitto: MosquittoService, make_fleet: FleetFactory
) -> None:
    centre = unique_id("rl")
    client, got = watch(mosquitto, centre)
    try:
        fleet = make_fleet(
            centre_ids=(centre,), mode="centre", devices_per_centre=2, accelerate=600, interval_s=60
        )
        assert isinstance(fleet.links[0], RawLink)
        router = f"{centre}-rtr1"
        send(client, centre, router, Command(id="i1", name="set_interval", args={"interval_s": 30}))
        wait_for(lambda: any(a.status == "done" for a in acks(got, router, "i1")), 10, "ack")  # type: ignore[attr-defined]
        send(client, centre, router, Command(id="r1", name="reboot"))
        wait_for(lambda: any(a.status == "done" for a in acks(got, router, "r1")), 10, "reboot")  # type: ignore[attr-defined]
        assert len([s for s in decoded(got, Channel.STATE, router) if s.online]) == 2  # type: ignore[attr-defined]

        fleet.cut(router, offline_s=5)  # the centre's connection; Will after 1-2 s (1 s delay)
        wait_for(lambda: decoded(got, Channel.STATE, router)[-1].online is False, 10, "Will")  # type: ignore[attr-defined]
        wait_for(lambda: decoded(got, Channel.STATE, router)[-1].online is True, 15, "back")  # type: ignore[attr-defined]
        before = fleet.stats().readings
        wait_for(lambda: fleet.stats().readings > before + 5, 10, "more readings")
        fleet.stop()
        with got.lock:
            msgs = [m for m in got.messages if m.topic.endswith(("/telemetry", "/event"))]
        for device in fleet.devices:
            seqs = {json.loads(m.payload)["seq"] for m in msgs if f"/{device}/" in m.topic}
            assert seqs == set(range(1, max(seqs) + 1)), f"{device}: a reading was lost"
    finally:
        close(client)


class SmallWindowBroker(MosquittoService):
    """The stack's broker with a Receive Maximum of 10 (Mosquitto's max_inflight_messages)."""

    def _config(self) -> str:
        return super()._config().replace("max_inflight_messages 1000", "max_inflight_messages 10")


@pytest.fixture
def small_window_broker(tmp_path: Path) -> Iterator[MosquittoService]:
    broker = SmallWindowBroker(tmp_path / "mq", free_port(), secrets.token_urlsafe(12))
    broker.start()
    yield broker
    broker.stop()


def test_in_flight_window_follows_the_brokers_receive_maximum(
    small_window_broker: MosquittoService, make_fleet: FleetFactory
) -> None:
    assert "max_inflight_messages 10" in small_window_broker.config_file.read_text()
    centre = unique_id("rm")
    client, got = watch(small_window_broker, centre)
    try:
        fleet = make_fleet(
            broker=small_window_broker,
            start=False,
            centre_ids=(centre,),
            mode="centre",
            interval_s=60,
            backfill_end_ms=MONDAY_10_IST + 12 * 3_600_000,
        )
        stats = fleet.run()
        link = fleet.links[0]
        assert isinstance(link, RawLink) and link.window == 10
        assert stats.errors == 0 and stats.reconnects == 0 and stats.dropped == 0
        wait_for(lambda: arrived(got, Channel.TELEMETRY) >= 7 * 720, 60, "every reading delivered")
        assert len(decoded(got, Channel.TELEMETRY)) >= 7 * 720  # and each follows the contract
    finally:
        close(client)


def test_centre_link_retries_a_refused_connect_until_the_broker_is_up(
    tmp_path: Path, make_fleet: FleetFactory
) -> None:
    broker = MosquittoService(tmp_path / "late", free_port(), secrets.token_urlsafe(12))
    centre = unique_id("lt")
    try:
        fleet = make_fleet(
            broker=broker, start=False, centre_ids=(centre,), mode="centre", accelerate=600
        )
        fleet.start()
        wait_for(lambda: fleet.stats().errors >= 1, 10, "a refused connect, counted")
        assert not fleet.links[0].connected and fleet.fatal() is None  # retrying, not given up
        broker.start()
        client, got = watch(broker, centre)
        try:
            wait_for(lambda: fleet.links[0].connected, 30, "connected after backoff")
            wait_for(lambda: decoded(got, Channel.TELEMETRY), 10, "readings")
        finally:
            close(client)
    finally:
        fleet.stop(drain_s=2)
        broker.stop()


def test_centre_link_publishes_over_tls_and_retries_a_foreign_ca_with_one_line(
    pki: Pki,
    tls_mosquitto: MosquittoService,
    make_fleet: FleetFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert tls_mosquitto.tls is not None
    centre = unique_id("tl")
    client, got = watch(tls_mosquitto, centre)  # on the plain listener of the same broker
    try:
        fleet = make_fleet(
            broker=tls_mosquitto,
            centre_ids=(centre,),
            mode="centre",
            accelerate=600,
            host="localhost",
            port=tls_mosquitto.tls.port,
            tls=True,
            tls_files=TlsFiles(ca_file=pki.ca, ca_setting="GRAMLINK_SIM_MQTT_CA_FILE"),
        )
        assert isinstance(fleet.links[0], RawLink) and fleet.links[0].tls is not None
        wait_for(lambda: len(decoded(got, Channel.TELEMETRY)) >= 10, 20, "readings over TLS")
        fleet.stop(drain_s=2)
        refused = make_fleet(
            broker=tls_mosquitto,
            start=False,
            centre_ids=(unique_id("tx"), unique_id("tx")),
            mode="centre",
            host="localhost",
            port=tls_mosquitto.tls.port,
            tls=True,
            tls_files=TlsFiles(ca_file=pki.other_ca, ca_setting="GRAMLINK_SIM_MQTT_CA_FILE"),
        )
        refused.start()
        wait_for(lambda: refused.stats().errors >= 4, 20, "connects refused, retried")
        assert not any(link.connected for link in refused.links) and refused.fatal() is None
        naming = [
            r.getMessage()
            for r in caplog.records
            if "broker_certificate_untrusted" in r.getMessage()
        ]
        assert len(naming) == 1  # two links, several attempts: one line a minute
        assert "check=GRAMLINK_SIM_MQTT_CA_FILE" in naming[0]
    finally:
        close(client)


def test_centre_link_finds_a_dark_link_by_the_missing_pingresp_and_loses_nothing(
    mosquitto: MosquittoService, make_fleet: FleetFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """A relay that swallows everything without closing: only the keepalive can tell."""
    proxy = FreezingProxy(mosquitto.port)
    centre = unique_id("dk")
    client, got = watch(mosquitto, centre)
    try:
        fleet = make_fleet(
            centre_ids=(centre,),
            mode="centre",
            devices_per_centre=2,
            accelerate=600,
            interval_s=60,
            port=proxy.port,
            keepalive_s=4,
        )
        proxy.frozen.set()
        wait_for(lambda: proxy.connections >= 2, 20, "reconnected through the relay")
        assert any("no PINGRESP within 4 s" in r.getMessage() for r in caplog.records)
        before = fleet.stats().readings
        wait_for(lambda: fleet.stats().readings > before + 5, 10, "more readings")
        fleet.stop()
        with got.lock:
            msgs = [m for m in got.messages if m.topic.endswith(("/telemetry", "/event"))]
        for device in fleet.devices:
            seqs = {json.loads(m.payload)["seq"] for m in msgs if f"/{device}/" in m.topic}
            assert seqs == set(range(1, max(seqs) + 1)), f"{device}: a reading was lost"
    finally:
        close(client)
        proxy.close()
