"""Steady flow, pseudonyms, state relay, quarantine and the downlink, against real brokers."""

from __future__ import annotations

import time
from pathlib import Path

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from contract.codec import encode
from contract.messages import CommandAck, State
from contract.pseudonym import pseudonymize
from gramlink.services import MosquittoService
from tests.factories import Received, admin_client, close, wait_for
from tests.gateway.conftest import KEY, GatewayFactory
from tests.gateway.sim import Collector, Devices, bp_event, router_reading, wait_until_flowing


def test_steady_flow_arrives_in_per_device_order(
    local_broker: MosquittoService,
    mosquitto: MosquittoService,
    make_gateway: GatewayFactory,
    centre: str,
) -> None:
    collector = Collector(mosquitto, centre).start()
    devices = Devices(local_broker, centre)
    make_gateway(centre, local_broker, mosquitto)
    wait_until_flowing(devices, collector)

    devices.publish("bp-1", "state", encode(State(online=True, kind="bp_monitor")), retain=True)
    for seq in range(300):
        devices.publish("router-1", "telemetry", router_reading(seq))
        devices.publish("router-2", "telemetry", router_reading(seq))
        if seq % 10 == 0:
            devices.publish("bp-1", "event", bp_event(seq))

    wait_for(lambda: len(collector.of("router-1")) >= 300, 30, "router-1 readings")
    wait_for(lambda: len(collector.of("router-2")) >= 300, 30, "router-2 readings")
    wait_for(lambda: len(collector.of("bp-1", "event")) >= 30, 30, "bp events")
    assert collector.seqs("router-1") == list(range(300))
    assert collector.seqs("router-2") == list(range(300))
    assert collector.seqs("bp-1", "event") == list(range(0, 300, 10))

    # The raw patient id never leaves the centre: only its pseudonym does.
    metrics = collector.of("bp-1", "event")[0].payload["metrics"]
    assert "patient_id" not in metrics
    assert metrics["patient_ref"] == pseudonymize(KEY.encode(), "p-0042")

    # state is relayed one to one, retained.
    wait_for(lambda: bool(collector.single("/bp-1/state")), 10, "relayed state")
    late = Received()
    watcher = admin_client(mosquitto)
    watcher.on_message = late.on_message
    watcher.subscribe(f"gl/v1/{centre}/bp-1/state", qos=1)
    wait_for(lambda: bool(late.messages), 10, "retained state")
    assert late.messages[0].retain
    close(watcher)
    devices.close()
    collector.close()


def test_malformed_payloads_are_quarantined_and_flow_continues(
    local_broker: MosquittoService,
    mosquitto: MosquittoService,
    make_gateway: GatewayFactory,
    centre: str,
) -> None:
    collector = Collector(mosquitto, centre).start()
    devices = Devices(local_broker, centre)
    gw = make_gateway(centre, local_broker, mosquitto)
    wait_until_flowing(devices, collector)

    bad = [
        ("router-1", "telemetry", b"{not json"),
        (
            "router-1",
            "telemetry",
            b'{"v":1,"kind":"router","ts":1,"seq":5,"metrics":{"cpu_pct":900}}',
        ),
        ("router-1", "telemetry", b'{"v":2,"kind":"router","ts":1,"seq":6,"metrics":{}}'),
        ("Router_X", "telemetry", router_reading(7)),
    ]
    devices.publish("router-1", "telemetry", router_reading(0))
    for device, channel, payload in bad:
        devices.publish(device, channel, payload)
    devices.publish("router-1", "telemetry", router_reading(1))

    wait_for(lambda: collector.seqs("router-1") == [0, 1], 20, "good readings around bad ones")
    wait_for(lambda: gw.quarantine.total == 4, 10, "4 quarantined")
    reasons = sorted(r.reason for r in gw.quarantine.recent())
    assert reasons == ["bad_json", "bad_topic", "out_of_range", "wrong_version"]
    assert all(a.seq in (0, 1) for a in collector.of("router-1"))
    assert not collector.of("Router_X")
    devices.close()
    collector.close()


def test_command_reaches_device_and_ack_comes_back(
    local_broker: MosquittoService,
    mosquitto: MosquittoService,
    make_gateway: GatewayFactory,
    centre: str,
) -> None:
    collector = Collector(mosquitto, centre).start()
    devices = Devices(local_broker, centre)
    make_gateway(centre, local_broker, mosquitto)
    wait_until_flowing(devices, collector)

    device_side = Received()
    device = admin_client(local_broker)
    device.on_message = device_side.on_message
    device.subscribe(f"gl/v1/{centre}/router-1/cmd", qos=1)
    central = admin_client(mosquitto)
    props = Properties(PacketTypes.PUBLISH)
    props.MessageExpiryInterval = 120
    cmd = b'{"v":1,"id":"cmd-1","name":"reboot","args":{}}'
    wait_for(
        lambda: (
            central.publish(f"gl/v1/{centre}/router-1/cmd", cmd, qos=1, properties=props)
            and bool(device_side.messages)
        ),
        15,
        "command at the device",
    )
    got = device_side.messages[0]
    assert got.payload == cmd
    assert 0 < got.properties.MessageExpiryInterval <= 120  # expiry survived the relay

    ack = encode(CommandAck(id="cmd-1", status="done"))
    device.publish(f"gl/v1/{centre}/router-1/cmd/ack", ack, qos=1)
    wait_for(lambda: bool(collector.single("/router-1/cmd/ack")), 15, "ack at the centre")
    assert collector.single("/router-1/cmd/ack")[0].payload == ack

    # twin/desired stays retained on the local broker.
    twin = b'{"v":1,"version":3,"config":{"interval_s":60}}'
    central.publish(f"gl/v1/{centre}/router-2/twin/desired", twin, qos=1, retain=True)
    late = Received()
    watcher = admin_client(local_broker)
    watcher.on_message = late.on_message

    def retained_twin() -> bool:
        watcher.subscribe(f"gl/v1/{centre}/router-2/twin/desired", qos=1)
        return any(m.retain and m.payload == twin for m in late.messages)

    wait_for(retained_twin, 15, "retained twin on the local broker")
    for client in (watcher, central, device):
        close(client)
    devices.close()
    collector.close()


def test_a_command_past_its_own_expiry_is_not_relayed(
    local_broker: MosquittoService,
    mosquitto: MosquittoService,
    make_gateway: GatewayFactory,
    centre: str,
    tmp_path: Path,
) -> None:
    """A copy the central broker sends again after a reconnect may come without its
    MQTT expiry counted down; the command's own ``expires`` still stops it."""
    collector = Collector(mosquitto, centre).start()
    devices = Devices(local_broker, centre)
    clock = tmp_path / "clock"
    clock.write_text("0 synced")  # the gateway trusts its clock only once it is synced
    gateway = make_gateway(centre, local_broker, mosquitto, clock_offset_file=clock)
    wait_until_flowing(devices, collector)

    device_side = Received()
    device = admin_client(local_broker)
    device.on_message = device_side.on_message
    device.subscribe(f"gl/v1/{centre}/router-1/cmd", qos=1)
    central = admin_client(mosquitto)
    now_ms = time.time_ns() // 1_000_000
    stale = b'{"v":1,"id":"stale-1","name":"reboot","args":{},"expires":%d}' % (now_ms - 5_000)
    live = b'{"v":1,"id":"live-1","name":"reboot","args":{},"expires":%d}' % (now_ms + 600_000)
    central.publish(f"gl/v1/{centre}/router-1/cmd", stale, qos=1).wait_for_publish(5)
    central.publish(f"gl/v1/{centre}/router-1/cmd", live, qos=1).wait_for_publish(5)
    wait_for(lambda: bool(device_side.messages), 15, "the live command at the device")
    wait_for(lambda: gateway.downlink.expired_total == 1, 5, "the stale one counted")
    assert [m.payload for m in device_side.messages] == [live]
    close(device)
    close(central)
