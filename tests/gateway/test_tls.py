"""Both gateway links over TLS (``mqtts://``) with a programme's own CA, against real
Mosquitto TLS listeners whose certificates ``openssl`` issues for the test
(``tests/tls.py``); the uplink also with a client certificate (mutual TLS)."""

from __future__ import annotations

import argparse
import logging
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from gateway.__main__ import start
from gateway.app import Gateway
from gramlink.services import MosquittoService
from gramlink.services.mosquitto import TlsListener
from gramlink.services.process import free_port
from tests.conftest import BrokerFactory
from tests.factories import wait_for
from tests.gateway.conftest import KEY, GatewayFactory
from tests.gateway.sim import Collector, Devices, router_reading, wait_until_flowing
from tests.tls import Pki


@pytest.fixture(scope="module")
def tls_local(broker_factory: BrokerFactory) -> MosquittoService:
    return broker_factory(tls=True)


@pytest.fixture(scope="module")
def mtls_central(broker_factory: BrokerFactory) -> MosquittoService:
    """A central broker whose TLS listener asks every client for a certificate."""
    return broker_factory(tls=True, client_certs=True)


@dataclass
class Site:
    """A centre whose gateway reaches both brokers over TLS."""

    collector: Collector
    devices: Devices
    gateway: Gateway


@pytest.fixture
def tls_site(
    tls_local: MosquittoService,
    mtls_central: MosquittoService,
    make_gateway: GatewayFactory,
    pki: Pki,
    centre: str,
) -> Iterator[Callable[..., Site]]:
    opened: list[Site] = []

    def open_site(uplink_ca: Path, **extra: Any) -> Site:
        collector = Collector(mtls_central, centre).start()
        devices = Devices(tls_local, centre)
        tls = {
            "local_url": tls_local.tls_url,
            "local_ca_file": pki.ca,
            "uplink_url": mtls_central.tls_url,
            "uplink_ca_file": uplink_ca,
            "uplink_cert_file": pki.client_cert,
            "uplink_key_file": pki.client_key,
            **extra,
        }
        gateway = make_gateway(centre, tls_local, mtls_central, **tls)
        opened.append(Site(collector, devices, gateway))
        return opened[-1]

    yield open_site
    for site in opened:
        site.devices.close()
        site.collector.close()


def test_readings_cross_tls_local_and_uplink_links_verified_against_the_programmes_ca(
    pki: Pki, tls_site: Callable[..., Site]
) -> None:
    site = tls_site(pki.ca)
    wait_until_flowing(site.devices, site.collector)
    for seq in range(50):
        site.devices.publish("router-1", "telemetry", router_reading(seq))
    wait_for(lambda: len(site.collector.of("router-1")) >= 50, 30, "readings over TLS")
    assert site.collector.seqs("router-1") == list(range(50))
    assert site.gateway.local.options.endpoint.tls and site.gateway.central.options.endpoint.tls
    assert site.gateway.central.connected.is_set()


def test_a_broker_certificate_from_another_ca_is_refused_with_one_line_and_readings_wait(
    pki: Pki, tls_site: Callable[..., Site], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    site = tls_site(pki.other_ca)
    published = 0

    def kept() -> bool:
        nonlocal published
        site.devices.publish("router-1", "telemetry", router_reading(published))
        published += 1
        return site.gateway.outbox.stats().depth >= 20

    wait_for(kept, 15, "readings kept in the outbox")
    wait_for(lambda: site.gateway.central.backoff.attempt >= 3, 15, "several connect attempts")
    assert not site.gateway.central.connected.is_set()
    assert site.gateway.central.refusal is None  # not permanent: it keeps trying
    assert site.collector.of("router-1") == []
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    naming = [line for line in lines if "GRAMLINK_GATEWAY_UPLINK_CA_FILE" in line]
    assert len(naming) == 1, lines  # one line, not one per attempt
    assert "event=broker_certificate_untrusted" in naming[0]


def test_a_tls_file_that_is_not_pem_stops_the_gateway_with_one_line_naming_it(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    mtls_central: MosquittoService,
) -> None:
    junk = tmp_path / "ca.pem"
    junk.write_text("not a certificate\n")
    monkeypatch.setenv("GRAMLINK_GATEWAY_CENTRE", "c-badca")
    monkeypatch.setenv("GRAMLINK_GATEWAY_UPLINK_URL", mtls_central.tls_url)
    monkeypatch.setenv("GRAMLINK_GATEWAY_UPLINK_CA_FILE", str(junk))
    monkeypatch.setenv("GRAMLINK_GATEWAY_PSEUDONYM_KEY", KEY)
    monkeypatch.setenv("GRAMLINK_GATEWAY_DATA_DIR", str(tmp_path / "gw"))
    assert start(argparse.Namespace()) == 2  # ExitCode.CONFIG
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1
    assert "GRAMLINK_GATEWAY_UPLINK_CA_FILE" in lines[0]


def test_centre_broker_from_the_shipped_config_serves_its_optional_tls_listener(
    pki: Pki, tmp_path: Path
) -> None:
    """``gramlink centre-broker install --tls-port ...``: devices that can do TLS log in there."""
    tls_port = free_port()
    broker = MosquittoService(
        tmp_path / "centre",
        free_port(),
        secrets.token_urlsafe(16),
        tls=TlsListener(tls_port, pki.cert, pki.key),
        centre=True,
    )
    broker.start()
    try:
        outcome: list[mqtt.ReasonCode] = []
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        client.tls_set(ca_certs=str(pki.ca))
        client.username_pw_set(broker.admin_user, broker.admin_password)
        client.on_connect = lambda c, u, flags, rc, props: outcome.append(rc)
        client.connect("localhost", tls_port, keepalive=10)
        client.loop_start()
        wait_for(lambda: bool(outcome), 10, "CONNACK over TLS")
        client.disconnect()
        client.loop_stop()
        assert not outcome[0].is_failure
    finally:
        broker.stop()
