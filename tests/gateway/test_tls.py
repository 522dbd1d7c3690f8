"""The uplink over TLS (``mqtts://``) with a programme's own CA, against a real
Mosquitto TLS listener whose certificate ``openssl`` issues for the test."""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from gateway.app import Gateway
from gramlink.services import MosquittoService
from gramlink.services.mosquitto import TlsListener
from gramlink.services.process import free_port
from tests.factories import wait_for
from tests.gateway.conftest import GatewayFactory
from tests.gateway.sim import Collector, Devices, router_reading, wait_until_flowing


@dataclass(frozen=True)
class Pki:
    ca: Path
    cert: Path
    key: Path
    other_ca: Path  # a CA that did not sign the broker's certificate


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


def _ca(directory: Path, name: str) -> tuple[Path, Path]:
    key, cert = directory / f"{name}.key", directory / f"{name}.pem"
    _openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        "-subj", f"/CN={name}", "-keyout", str(key), "-out", str(cert),
    )  # fmt: skip
    return cert, key


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("pki")
    ca, ca_key = _ca(directory, "gramlink-test-ca")
    other_ca, _ = _ca(directory, "someone-else")
    key, cert = directory / "broker.key", directory / "broker.pem"
    request = directory / "broker.csr"
    extensions = directory / "san.cnf"
    extensions.write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    _openssl(
        "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
        "-keyout", str(key), "-out", str(request),
    )  # fmt: skip
    _openssl(
        "x509", "-req", "-in", str(request), "-CA", str(ca), "-CAkey", str(ca_key),
        "-CAcreateserial", "-days", "2", "-extfile", str(extensions), "-out", str(cert),
    )  # fmt: skip
    return Pki(ca, cert, key, other_ca)


@pytest.fixture(scope="module")
def tls_central(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[MosquittoService]:
    broker = MosquittoService(
        tmp_path_factory.mktemp("central-tls"),
        free_port(),
        secrets.token_urlsafe(16),
        tls=TlsListener(free_port(), pki.cert, pki.key),
    )
    broker.start()
    yield broker
    broker.stop()


@dataclass
class Site:
    """A centre whose gateway's uplink is the TLS listener, trusting one CA."""

    collector: Collector
    devices: Devices
    gateway: Gateway


@pytest.fixture
def tls_site(
    tls_central: MosquittoService,
    local_broker: MosquittoService,
    make_gateway: GatewayFactory,
    centre: str,
) -> Iterator[Callable[[Path], Site]]:
    opened: list[Site] = []

    def start(ca_file: Path) -> Site:
        collector = Collector(tls_central, centre).start()
        devices = Devices(local_broker, centre)
        tls = {"uplink_url": tls_central.tls_url, "uplink_ca_file": ca_file}
        gateway = make_gateway(centre, local_broker, tls_central, **tls)
        opened.append(Site(collector, devices, gateway))
        return opened[-1]

    yield start
    for site in opened:
        site.devices.close()
        site.collector.close()


def test_readings_cross_a_tls_uplink_verified_against_the_programmes_ca(
    pki: Pki, tls_site: Callable[[Path], Site]
) -> None:
    site = tls_site(pki.ca)
    wait_until_flowing(site.devices, site.collector)
    for seq in range(50):
        site.devices.publish("router-1", "telemetry", router_reading(seq))
    wait_for(lambda: len(site.collector.of("router-1")) >= 50, 30, "readings over TLS")
    assert site.collector.seqs("router-1") == list(range(50))
    assert site.gateway.central.connected.is_set()


def test_a_broker_certificate_from_another_ca_is_refused_and_readings_wait(
    pki: Pki, tls_site: Callable[[Path], Site]
) -> None:
    site = tls_site(pki.other_ca)
    published = 0

    def kept() -> bool:
        nonlocal published
        site.devices.publish("router-1", "telemetry", router_reading(published))
        published += 1
        return site.gateway.outbox.stats().depth >= 20

    wait_for(kept, 15, "readings kept in the outbox")
    assert not site.gateway.central.connected.is_set()
    assert site.collector.of("router-1") == []


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
