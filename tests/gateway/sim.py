"""Test helpers: simulated devices (plain paho) and a central-side collector."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from contract.codec import decode_batch, encode
from contract.messages import event, telemetry
from contract.metrics import BpMonitorMetrics, RouterMetrics
from contract.receipts import RECEIPT_CHANNEL, encode_receipt, receipt_topic
from gramlink.services import MosquittoService
from tests.factories import admin_client, unique_id, wait_for

TS0 = int(time.time() * 1000) - 86_400_000  # a day ago: a plausible device time


def router_reading(seq: int) -> bytes:
    metrics = RouterMetrics(uptime_s=seq, wan_up=True, wifi_clients=seq % 30, cpu_pct=12.5)
    return encode(telemetry("router", ts=TS0 + seq * 1000, seq=seq, metrics=metrics))


def bp_event(seq: int, patient: str = "p-0042") -> bytes:
    metrics = BpMonitorMetrics(systolic_mmhg=120, diastolic_mmhg=80, patient_id=patient)
    return encode(
        event("bp_monitor", ts=TS0 + seq * 1000, seq=seq, name="measurement", metrics=metrics)
    )


@dataclass(frozen=True)
class Arrival:
    device: str
    channel: str
    seq: int
    payload: dict[str, Any]
    model: str | None = None  # the model the gateway stamped into the record
    at: float = 0.0  # when it arrived (monotonic)
    suspect: bool = False  # the record's clock-suspect flag (``cs``)


@dataclass
class Collector:
    """Central side: the admin account subscribed to a centre, batches decoded.

    Stands in for ingest: with ``receipts`` (the default) it answers each envelope
    with a storage receipt, so the gateway deletes the batch; without, batches stay
    sent and unreceipted in the gateway's outbox.
    """

    broker: MosquittoService
    centre: str
    client_id: str = field(default_factory=lambda: unique_id("collector"))
    arrivals: list[Arrival] = field(default_factory=list)
    envelopes: list[tuple[float, int]] = field(default_factory=list)  # (monotonic, bytes)
    singles: list[mqtt.MQTTMessage] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    receipts: bool = True

    def start(self) -> Collector:
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=mqtt.MQTTv5
        )
        client.username_pw_set(self.broker.admin_user, self.broker.admin_password)
        client.reconnect_delay_set(0.1, 0.5)
        client.on_message = self._on_message
        subscribed = threading.Event()

        def on_connect(c: mqtt.Client, u: object, flags: object, rc: object, p: object) -> None:
            c.subscribe(f"gl/v1/{self.centre}/#", qos=1)

        client.on_connect = on_connect
        client.on_subscribe = lambda *a: subscribed.set()
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 600
        client.connect(self.broker.bind, self.broker.port, clean_start=False, properties=props)
        client.loop_start()
        wait_for(subscribed.is_set, 10, "collector subscribed")
        self.client = client
        return self

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def _on_message(self, c: mqtt.Client, u: object, msg: mqtt.MQTTMessage) -> None:
        if msg.topic.endswith("/" + RECEIPT_CHANNEL):
            return
        if msg.topic.endswith("/_gateway/batch"):
            at = time.monotonic()
            batch = decode_batch(bytes(msg.payload))
            new = [
                Arrival(r.dev, r.ch, int(r.p["seq"]), r.p, r.m, at, bool(r.cs))
                for r in batch.records
            ]
            with self.lock:
                self.arrivals.extend(new)
                self.envelopes.append((at, len(msg.payload)))
            if self.receipts:
                receipt = encode_receipt(batch.gw, [batch.seq])
                c.publish(receipt_topic(self.centre, batch.gw), receipt, qos=1)
        else:
            with self.lock:
                self.singles.append(msg)

    def of(self, device: str, channel: str = "telemetry") -> list[Arrival]:
        with self.lock:
            return [a for a in self.arrivals if a.device == device and a.channel == channel]

    def seqs(self, device: str, channel: str = "telemetry") -> list[int]:
        return [a.seq for a in self.of(device, channel)]

    def single(self, topic_suffix: str) -> list[mqtt.MQTTMessage]:
        with self.lock:
            return [m for m in self.singles if m.topic.endswith(topic_suffix)]


class Devices:
    """Simulated devices of one centre publishing to the local broker (admin account)."""

    def __init__(self, broker: MosquittoService, centre: str) -> None:
        self.broker = broker
        self.centre = centre
        self.client = admin_client(broker)
        self.acked: set[int] = set()
        self.client.on_publish = lambda c, u, mid, rc, p: self._acked(mid)
        self.lock = threading.Lock()

    def _acked(self, mid: int) -> None:
        with self.lock:
            self.acked.add(mid)

    def publish(
        self, device: str, channel: str, payload: bytes, retain: bool = False
    ) -> mqtt.MQTTMessageInfo:
        topic = f"gl/v1/{self.centre}/{device}/{channel}"
        return self.client.publish(topic, payload, qos=1, retain=retain)

    def was_acked(self, info: mqtt.MQTTMessageInfo) -> bool:
        return info.is_published()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def wait_until_flowing(devices: Devices, collector: Collector, timeout: float = 20.0) -> int:
    """Publish probe readings until one crosses the gateway; returns how many were sent."""
    deadline = time.monotonic() + timeout
    seq = 0
    while not collector.of("probe"):
        if time.monotonic() > deadline:
            raise AssertionError("gateway never relayed a probe reading")
        devices.publish("probe", "telemetry", router_reading(seq))
        seq += 1
        try:
            wait_for(lambda: bool(collector.of("probe")), 0.5, "probe")
        except AssertionError:
            continue
    return seq


def wait_until_received(
    devices: Devices,
    received: Callable[[], int],
    channel: str = "telemetry",
    probe: Callable[[int], bytes] = router_reading,
    timeout: float = 20.0,
) -> None:
    """Publish probes (device ``probe``) until ``received()`` counts one at the gateway:
    its local subscription is live. For tests where nothing reaches the central side."""
    seq = 0

    def arrived() -> bool:
        nonlocal seq
        if received() > 0:
            return True
        devices.publish("probe", channel, probe(seq))
        seq += 1
        return False

    wait_for(arrived, timeout, "the gateway subscribed on the local broker")
