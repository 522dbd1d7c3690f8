"""The simulator's device mode over ``mqtts://`` (a real Mosquitto TLS listener,
certificates by openssl), and one line naming the CA setting when the broker's
certificate comes from another CA."""

from __future__ import annotations

import os
import subprocess
import sys

from contract.topics import Channel
from gramlink.services import MosquittoService
from mqttlink.endpoint import Endpoint, TlsFiles
from tests.factories import close, unique_id, wait_for
from tests.firmware_sim.conftest import FleetFactory
from tests.firmware_sim.test_fleet import decoded, watch
from tests.tls import Pki


def test_device_mode_publishes_over_mqtts_verified_against_the_programmes_ca(
    tls_mosquitto: MosquittoService, make_fleet: FleetFactory, pki: Pki
) -> None:
    centre = unique_id("tc")
    client, got = watch(tls_mosquitto, centre)
    endpoint = Endpoint.parse(tls_mosquitto.tls_url)
    try:
        fleet = make_fleet(
            tls_mosquitto,
            host=endpoint.host,
            port=endpoint.port,
            tls=True,
            tls_files=TlsFiles(ca_file=pki.ca),
            centre_ids=(centre,),
            devices_per_centre=3,
            accelerate=600,
            interval_s=60,
        )
        assert all(link.tls is not None for link in fleet.links)  # type: ignore[union-attr]
        wait_for(lambda: len(decoded(got, Channel.TELEMETRY)) >= 9, 20, "readings over TLS")
        assert {d for d in fleet.devices} == {
            m.topic.split("/")[3] for m in got.messages if m.topic.endswith("/telemetry")
        }
        assert fleet.stats().errors == 0
    finally:
        close(client)


def test_a_broker_certificate_from_another_ca_gives_one_line_naming_the_ca_setting(
    tls_mosquitto: MosquittoService, pki: Pki
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRAMLINK_")}
    env["GRAMLINK_SIM_MQTT_PASSWORD"] = tls_mosquitto.admin_password
    result = subprocess.run(
        [sys.executable, "-m", "gramlink", "sim", "--mqtt-url", tls_mosquitto.tls_url,
         "--mqtt-ca-file", str(pki.other_ca), "--username", tls_mosquitto.admin_user,
         "--centre-prefix", unique_id("tx") + "-", "--devices-per-centre", "3",
         "--duration", "3"],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    naming = [line for line in result.stderr.splitlines() if "GRAMLINK_SIM_MQTT_CA_FILE" in line]
    assert len(naming) == 1, result.stderr  # three devices, several attempts each: one line
    assert "event=broker_certificate_untrusted" in naming[0]
    assert "connected=0/3" in result.stderr  # nothing got through unverified
