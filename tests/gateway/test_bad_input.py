"""Bad input at the gateway: refused where it enters, never leaked, never stopping a worker.

Through a real local and central Mosquitto: devices publish on the local broker,
the test plays the API on the central one (``FakeApi``).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from contract.codec import encode
from contract.messages import State, telemetry
from contract.metrics import DeviceKind, PowerMetrics
from contract.provisioning import DynsecOp
from contract.topics import Topic
from gateway.centre_devices import CentreDevices
from gateway.outbox import NewRow
from gateway.pseudonymize import Transformer
from gramlink.services import MosquittoService
from runtime.exits import ExitCode
from tests.factories import wait_for
from tests.gateway.conftest import KEY, GatewayFactory
from tests.gateway.sim import TS0, Collector, Devices, router_reading, wait_until_flowing
from tests.gateway.test_local_enforcement import FakeApi, start_gateway


def power_reading(seq: int) -> bytes:
    metrics = PowerMetrics(pv_power_w=100.0 + seq, grid_present=True)
    return encode(telemetry("power", ts=TS0 + seq * 1000, seq=seq, metrics=metrics))


def reasons(gw: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in gw.quarantine.recent():
        out[r.reason] = out.get(r.reason, 0) + 1
    return out


def test_readings_of_unknown_devices_or_another_kind_are_quarantined_once_the_fleet_is_known(
    local_broker: MosquittoService,
    mosquitto: MosquittoService,
    make_gateway: GatewayFactory,
    centre: str,
) -> None:
    api = FakeApi(mosquitto, centre)
    collector = Collector(mosquitto, centre).start()
    devices = Devices(local_broker, centre)
    gw = start_gateway(make_gateway, centre, local_broker, mosquitto)
    wait_until_flowing(devices, collector)  # no update yet: every device taken as it comes
    power = api.dev("power-1")
    api.first(power, kind=DeviceKind.POWER)
    assert gw.devices is not None and gw.devices.kind_of(power) == "power"

    devices.publish(power, "telemetry", router_reading(1))  # a router reading on its topic
    devices.publish(power, "state", encode(State(online=True, kind="router", model="x")))
    devices.publish("stranger", "telemetry", router_reading(2))  # nobody provisioned it
    devices.publish(power, "telemetry", power_reading(3))

    wait_for(lambda: collector.seqs(power) == [3], 20, "the power unit's own reading")
    wait_for(lambda: gw.quarantine.total == 3, 10, "3 quarantined")
    assert reasons(gw) == {"kind_mismatch": 2, "unknown_device": 1}
    assert not collector.of("stranger")
    assert [a.payload["kind"] for a in collector.of(power)] == ["power"]
    assert not collector.single(f"{power}/state")
    devices.close()
    collector.close()
    api.close()


def test_the_centres_devices_survive_a_restart_and_a_deleted_device_is_unknown(
    tmp_path: Path,
) -> None:
    book = CentreDevices(tmp_path / "gw.db", "gw-1")
    assert not book.known and book.kind_of("a") is None
    book.learn("a", "power")
    book.learn("b", "router")
    book.forget("b")
    book.close()
    again = CentreDevices(tmp_path / "gw.db", "gw-1")
    assert again.known and len(again) == 1
    assert again.kind_of("a") == "power" and again.kind_of("b") is None
    assert not CentreDevices(tmp_path / "gw.db", "gw-2").known  # another gateway record
    again.learn("b", "power")
    assert again.kind_of("b") == "power"


def test_a_malformed_health_reading_keeps_no_patient_id_and_log_lines_are_escaped(
    local_broker: MosquittoService,
    mosquitto: MosquittoService,
    make_gateway: GatewayFactory,
    centre: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="gateway.local_in")
    collector = Collector(mosquitto, centre).start()
    devices = Devices(local_broker, centre)
    gw = make_gateway(centre, local_broker, mosquitto)
    wait_until_flowing(devices, collector)

    malformed = {
        "v": 1,
        "kind": "bp_monitor",
        "ts": TS0,
        "seq": 1,
        "name": "measurement",
        "metrics": {"patient_id": "ravi-kumar-42", "systolic_mmhg": 999},
    }
    devices.publish("bp-1", "event", json.dumps(malformed).encode())
    forged = b'\x00\nlevel=ERROR logger=gateway event=forged "x\r\n\x1b[31m'
    devices.publish("router-1", "telemetry", forged)
    for _ in range(5):  # the same reason again: one line a minute, not one a message
        devices.publish("router-1", "telemetry", b"{not json")
    devices.publish("router-1", "telemetry", router_reading(1))

    wait_for(lambda: collector.seqs("router-1") == [1], 20, "the good reading after them")
    wait_for(lambda: gw.quarantine.total == 7, 10, "7 quarantined")
    for entry in gw.quarantine.recent():
        assert b"ravi-kumar-42" not in entry.payload
    (health,) = [r for r in gw.quarantine.recent() if r.topic.endswith("/event")]
    assert health.reason == "out_of_range" and b"<redacted>" in health.payload

    lines = [r.getMessage() for r in caplog.records if "event=quarantined" in r.getMessage()]
    assert len(lines) == 2, lines  # out_of_range once, bad_json once (6 of them)
    for line in lines:
        assert not any(ch in line for ch in "\x00\n\r\x1b")
        assert "ravi-kumar-42" not in line
    (bad_json,) = [line for line in lines if "reason=bad_json" in line]
    assert '\\x00\\nlevel=ERROR logger=gateway event=forged \\"x\\r\\n\\x1b[31m' in bad_json
    devices.close()
    collector.close()


class PoisonedTransformer(Transformer):
    """Our own converter with a bug that only one device's messages trigger."""

    def row(self, topic: Topic, payload: bytes, rx_ms: int) -> NewRow:
        if topic.device == "poison-1":
            raise RuntimeError("boom " + "x" * 500)
        return super().row(topic, payload, rx_ms)


def test_a_message_that_crashes_the_conversion_is_set_aside_and_never_comes_back(
    local_broker: MosquittoService,
    mosquitto: MosquittoService,
    make_gateway: GatewayFactory,
    centre: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    collector = Collector(mosquitto, centre).start()
    devices = Devices(local_broker, centre)
    gw = make_gateway(centre, local_broker, mosquitto)
    gw.local_in.transformer = PoisonedTransformer(centre, KEY.encode())
    wait_until_flowing(devices, collector)

    devices.publish("poison-1", "telemetry", router_reading(1))
    devices.publish("router-1", "telemetry", router_reading(2))

    wait_for(lambda: collector.seqs("router-1") == [2], 20, "the reading after the poison")
    (entry,) = gw.quarantine.recent()
    assert entry.reason == "internal_error"
    assert entry.detail.startswith("RuntimeError: boom xxx") and len(entry.detail) <= 200
    assert entry.payload == router_reading(1)
    assert gw.local_in.internal_errors == 1
    assert gw.check() is None and gw.local_in.alive  # the worker goes on
    assert any("event=internal_error" in r.getMessage() for r in caplog.records)

    # Acknowledged: a restarted gateway (same session, same store) is not handed it again.
    gw.stop()
    gw2 = make_gateway(centre, local_broker, mosquitto)
    wait_for(lambda: gw2.local.connected.is_set(), 10, "restarted gateway connected")
    devices.publish("router-1", "telemetry", router_reading(3))
    wait_for(lambda: collector.seqs("router-1") == [2, 3], 20, "the marker after the restart")
    assert not collector.of("poison-1")
    assert gw2.quarantine.total == 1 and gw2.local_in.internal_errors == 0
    devices.close()
    collector.close()


class PoisonedAuth:
    """The gateway's own LocalAuth with a bug that one device's update triggers."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def apply(self, payload: bytes) -> Any:
        if b"poison" in payload:
            raise KeyError("boom")
        return self.inner.apply(payload)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_a_credential_update_that_crashes_is_set_aside_and_the_next_is_applied(
    local_broker: MosquittoService,
    mosquitto: MosquittoService,
    make_gateway: GatewayFactory,
    centre: str,
) -> None:
    api = FakeApi(mosquitto, centre)
    gw = start_gateway(make_gateway, centre, local_broker, mosquitto)
    api.first(api.dev("router-0"))
    assert gw.dynsec is not None
    gw.dynsec.auth = PoisonedAuth(gw.dynsec.auth)  # type: ignore[assignment]

    poison = api.send(DynsecOp.UPSERT, api.dev("poison"))
    good = api.send(DynsecOp.UPSERT, api.dev("router-1"))

    assert api.wait_applied(good).ok
    refusal = api.wait_applied(poison)
    assert not refusal.ok and refusal.error == "internal_error: KeyError: 'boom'"
    assert [r.reason for r in gw.quarantine.recent()] == ["internal_error"]
    assert gw.check() is None and gw.dynsec.alive
    api.close()


def test_a_link_whose_callback_raises_stops_the_gateway_with_exit_1(
    local_broker: MosquittoService,
    mosquitto: MosquittoService,
    make_gateway: GatewayFactory,
    centre: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A bug on a link's network thread: the watchdog ends the gateway (systemd
    restarts it) instead of a gateway that looks alive and relays nothing."""
    collector = Collector(mosquitto, centre).start()
    devices = Devices(local_broker, centre)
    gw = make_gateway(centre, local_broker, mosquitto)
    wait_until_flowing(devices, collector)

    def broken(msg: object, generation: int) -> None:
        raise RuntimeError("a bug")

    gw.local._on_message_cb = broken
    devices.publish("router-1", "telemetry", router_reading(1))
    wait_for(lambda: gw.check() is not None, 20, "the watchdog sees the link end")
    assert gw.check() == ExitCode.INTERNAL
    assert gw.local.failure is not None and "RuntimeError: a bug" in gw.local.failure
    lines = [r.getMessage() for r in caplog.records]
    assert any("event=link_failed link=local" in line for line in lines)
    assert any('event=worker_died worker="local link"' in line for line in lines)
    devices.close()
    collector.close()
