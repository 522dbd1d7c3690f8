"""Counting readings: what the devices published against what InfluxDB stored.

:class:`Published` is a client of the centre's broker with its own persistent
session, subscribed to every device's telemetry and events: each (device, seq)
the broker accepted from a device (QoS 1) reaches it, whatever happens further
down. A payload without a valid ``seq`` (the simulator's malformed input) is
counted apart: it must be quarantined, never stored.

:func:`stored` reads every point of the centre back from InfluxDB. InfluxDB
overwrites a point with the same series and timestamp, so a reading stored
twice shows up as two points of one (device, seq) under different series (a
different ``model`` tag) or timestamps: that is a duplicate.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from contract.codec import encode
from contract.messages import telemetry
from contract.metrics import Measurement, RouterMetrics
from gramlink.services import InfluxService, MosquittoService
from tests.factories import wait_for

READING_MEASUREMENTS = tuple(m.value for m in Measurement if m is not Measurement.GATEWAY)
Key = tuple[str, int]
PROBE = "probe"


@dataclass
class Published:
    """Every valid (device, seq) the centre broker routed, and the malformed count."""

    broker: MosquittoService
    centre: str
    keys: set[Key] = field(default_factory=set)
    malformed: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> Published:
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=f"tally-{uuid.uuid4().hex[:8]}",
            protocol=mqtt.MQTTv5,
        )
        client.username_pw_set(self.broker.admin_user, self.broker.admin_password)
        client.reconnect_delay_set(1, 2)
        client.max_queued_messages_set(0)
        subscribed = threading.Event()

        def on_connect(c: mqtt.Client, u: object, flags: object, rc: object, p: object) -> None:
            c.subscribe(
                [(f"gl/v1/{self.centre}/+/telemetry", 1), (f"gl/v1/{self.centre}/+/event", 1)]
            )

        client.on_connect = on_connect
        client.on_subscribe = lambda *a: subscribed.set()
        client.on_message = self._on_message
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        client.connect(self.broker.bind, self.broker.port, clean_start=False, properties=props)
        client.loop_start()
        wait_for(subscribed.is_set, 10, "the tally subscribed at the centre broker")
        self.client = client
        return self

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def _on_message(self, c: mqtt.Client, u: object, msg: mqtt.MQTTMessage) -> None:
        device = msg.topic.split("/")[3]
        try:
            body = json.loads(msg.payload)
            seq = body["seq"] if isinstance(body, dict) and body.get("v") == 1 else None
        except (ValueError, KeyError):
            seq = None
        if device == PROBE:
            return  # sent before the path was complete (see probe), never counted
        with self.lock:
            if isinstance(seq, int) and seq >= 0:
                self.keys.add((device, seq))
            else:
                self.malformed += 1

    def probe(self, influx: InfluxService, timeout: float = 60) -> None:
        """Publish a ``probe`` router's readings until one is stored: the gateway's session at
        the centre broker and ingest's subscription exist, so nothing sent from now on is
        missed for want of a subscriber. Probes are not counted (the first ones may be sent
        before the gateway subscribed)."""
        deadline = time.monotonic() + timeout
        seq = 0
        while not _probe_stored(influx, self.centre):
            if time.monotonic() > deadline:
                raise AssertionError(f"no probe reading stored within {timeout:.0f} s")
            metrics = RouterMetrics(uptime_s=seq, wan_up=True, wifi_clients=0, cpu_pct=1.0)
            reading = telemetry("router", ts=int(time.time() * 1000), seq=seq, metrics=metrics)
            self.client.publish(f"gl/v1/{self.centre}/{PROBE}/telemetry", encode(reading), qos=1)
            seq += 1
            time.sleep(0.5)

    def snapshot(self) -> set[Key]:
        with self.lock:
            return set(self.keys)


class BatchWatch:
    """A client of the central broker that sees the gateway's batches arrive, so a fault can
    strike right after the broker took one (and acknowledged it to the gateway)."""

    def __init__(self, broker: MosquittoService, centre: str) -> None:
        self.broker = broker
        self.centre = centre
        self.arrived = threading.Event()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=f"watch-{uuid.uuid4().hex[:8]}",
            protocol=mqtt.MQTTv5,
        )
        self.client.username_pw_set(broker.admin_user, broker.admin_password)
        self.client.on_message = lambda c, u, m: self.arrived.set()

    def __enter__(self) -> BatchWatch:
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.connect(self.broker.bind, self.broker.port)
        self.client.loop_start()
        self.client.subscribe(f"gl/v1/{self.centre}/+/_gateway/batch", qos=0)
        wait_for(subscribed.is_set, 10, "the batch watch subscribed")
        return self

    def next_batch(self, timeout: float = 10) -> None:
        self.arrived.clear()
        if not self.arrived.wait(timeout):
            raise AssertionError(f"no batch reached the central broker within {timeout:.0f} s")

    def __exit__(self, *exc: object) -> None:
        self.client.disconnect()  # harmless when the broker is already gone
        self.client.loop_stop()


def _probe_stored(influx: InfluxService, centre: str) -> bool:
    body = influx.query(
        f"SELECT count(\"seq\") FROM router WHERE centre = '{centre}' AND device = '{PROBE}'",
        database=influx.database,
    )
    return bool(body["results"][0].get("series"))


def _where(centre: str) -> str:
    return f"FROM {','.join(READING_MEASUREMENTS)} WHERE \"centre\" = '{centre}'"


def stored(influx: InfluxService, centre: str) -> Counter[Key]:
    """Points per (device, seq) of ``centre``'s readings (more than 1: stored twice)."""
    body = influx.query(
        f'SELECT "seq" {_where(centre)} GROUP BY "device", "model"', database=influx.database
    )
    points: Counter[Key] = Counter()
    for result in body["results"]:
        if result.get("partial"):
            raise AssertionError("InfluxDB cut the answer short (max-row-limit)")
        for series in result.get("series", []):
            device = series["tags"]["device"]
            if device == PROBE:
                continue
            points.update((device, int(seq)) for _, seq in series["values"])
    return points


def stored_upto(influx: InfluxService, centre: str, highest: dict[str, int]) -> dict[str, int]:
    """Per device, the points stored with ``seq`` up to ``highest[device]`` (cheap to poll)."""
    statements = [
        f'SELECT count("seq") {_where(centre)} AND "device" = \'{d}\' AND "seq" <= {s}'
        for d, s in sorted(highest.items())
    ]
    if not statements:
        return {}
    body = influx.query(";".join(statements), database=influx.database)
    out: dict[str, int] = {}
    for device, result in zip(sorted(highest), body["results"], strict=True):
        series = result.get("series") or []
        out[device] = sum(int(s["values"][0][1]) for s in series)
    return out


@dataclass(frozen=True)
class Tally:
    """One scenario's outcome."""

    scenario: str
    published: int
    stored: int
    lost: int
    duplicated: int
    unexpected: int  # stored readings nobody published (must be 0)
    malformed: int
    recovery_s: float | None  # fault end -> everything published until then stored
    note: str = ""
    queued: int | None = None  # readings the centre broker queued during a gateway outage

    @classmethod
    def of(
        cls,
        scenario: str,
        published: set[Key],
        points: Counter[Key],
        malformed: int,
        recovery_s: float | None,
        note: str = "",
        queued: int | None = None,
    ) -> Tally:
        keys = set(points)
        return cls(
            scenario=scenario,
            published=len(published),
            stored=len(keys & published),
            lost=len(published - keys),
            duplicated=sum(n - 1 for n in points.values()),
            unexpected=len(keys - published),
            malformed=malformed,
            recovery_s=recovery_s,
            note=note,
            queued=queued,
        )

    @property
    def clean(self) -> bool:
        return self.lost == 0 and self.duplicated == 0 and self.unexpected == 0
