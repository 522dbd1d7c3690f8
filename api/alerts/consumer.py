"""The engine's two persistent MQTT sessions on the central broker, and their inbox.

Each :class:`Consumer` is a :class:`mqttlink.paho_link.MqttLink` with a fixed
client id, ``clean_start=False`` and a session expiry, so what arrives while the
engine restarts waits for it on the broker. Its subscriptions (not shared: the
engine's state is keyed by subject, see docs/alerts.md) are QoS 1 and
acknowledged by hand: only after the round that evaluated a message committed
(:meth:`Consumer.ack`, each session its own messages).

- The **bulk** session (``gl-alerts-{host}``, :data:`Lane.BULK`): the gateway
  envelopes, the readings published straight to the central broker and the
  ``state`` messages. After a centre's outage it may hold a long backlog.
- The **edge** session (the same id with ``-edge``, :data:`Lane.EDGE`): only the
  alerts raised at the centres' gateways (``_gateway/alert``). The broker queues
  them for this session apart from the bulk one, so a clinical alert raised at a
  centre never waits behind the envelopes queued for the bulk session.

``_on_message`` runs on the session's paho network thread and only puts the
message into the :class:`Inbox` both share, which hands the edge lane's
messages out first, in a take of their own (each lane in arrival order). The
inbox is bounded (both
sessions' ``receive_maximum`` plus room for QoS 0 messages). A broker that keeps
to our Receive Maximum fills it only with a flood of QoS 0; Mosquitto 2.0.11
does not keep to it once acknowledgements flow (docs/architecture.md), so a
backlog can fill it too. Either way the network threads then wait (TCP pushes
back to the broker). Its payloads are bounded too
(:data:`INBOX_BYTES`: ten thousand envelopes of a long outage would be hundreds
of MB); past that the network threads wait the same way.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from enum import IntEnum
from typing import Final

import paho.mqtt.client as mqtt
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from api.alerts.settings import AlertsSettings
from contract.edge import alert_filter
from contract.topics import Channel, subscription
from mqttlink.paho_link import LinkOptions, MqttLink

CHANNELS: Final = (Channel.GATEWAY_BATCH, Channel.TELEMETRY, Channel.EVENT, Channel.STATE)
QOS0_ROOM: Final = 10_000
INBOX_BYTES: Final = 64 * 1024 * 1024
EDGE_SUFFIX: Final = "-edge"


class Lane(IntEnum):
    """Which session a message came on; the lower value is taken first."""

    EDGE = 0
    BULK = 1


@dataclass(frozen=True, slots=True)
class Message:
    topic: str
    payload: bytes
    mid: int
    qos: int
    generation: int
    arrived: float  # time.monotonic() when it reached us
    lane: Lane = Lane.BULK


def filters(lane: Lane = Lane.BULK) -> list[str]:
    if lane is Lane.EDGE:
        return [alert_filter()]
    return [subscription(channel) for channel in CHANNELS]


def client_id(settings: AlertsSettings, lane: Lane) -> str:
    return settings.client_id + (EDGE_SUFFIX if lane is Lane.EDGE else "")


class Inbox:
    """What the sessions received, for the engine thread, one lane per take: the edge
    lane's messages whenever there are any, else the bulk lane's (each in arrival order)."""

    def __init__(self, maxsize: int, max_bytes: int = INBOX_BYTES) -> None:
        self._lanes: dict[Lane, deque[Message]] = {lane: deque() for lane in Lane}
        self._size = 0
        self._bytes = 0
        self._max = maxsize
        self._max_bytes = max_bytes
        self._changed = threading.Condition()

    def _room(self) -> bool:
        return self._size == 0 or (self._size < self._max and self._bytes < self._max_bytes)

    def put(self, message: Message) -> None:
        """Queue ``message``; waits while the inbox is full (a network thread: TCP pushes back)."""
        with self._changed:
            self._changed.wait_for(self._room)
            self._lanes[message.lane].append(message)
            self._size += 1
            self._bytes += len(message.payload)
            self._changed.notify_all()

    def take(self, room: int, wait_s: float, max_bytes: int) -> list[Message]:
        """Up to ``room`` messages of one lane (edge first), waiting up to ``wait_s`` for one;
        no more once their payloads reach ``max_bytes`` (the first is taken whatever its size)."""
        with self._changed:
            if not self._size and wait_s > 0:
                self._changed.wait_for(lambda: self._size > 0, wait_s)
            return self._pop(self._lanes[Lane.EDGE] or self._lanes[Lane.BULK], room, max_bytes)

    def take_edge(self, room: int, max_bytes: int) -> list[Message]:
        """:meth:`take` of the edge lane alone, without waiting (between a round's parts)."""
        with self._changed:
            return self._pop(self._lanes[Lane.EDGE], room, max_bytes)

    def _pop(self, lane: deque[Message], room: int, max_bytes: int) -> list[Message]:
        out: list[Message] = []
        size = 0
        while lane and len(out) < room and size < max_bytes:
            message = lane.popleft()
            out.append(message)
            size += len(message.payload)
        if out:
            self._size -= len(out)
            self._bytes -= size
            self._changed.notify_all()
        return out

    def __len__(self) -> int:
        return self._size


class Consumer:
    """One of the engine's sessions (``lane``), putting what it receives into ``inbox``."""

    def __init__(self, settings: AlertsSettings, inbox: Inbox, lane: Lane = Lane.BULK) -> None:
        self.inbox = inbox
        self.lane = lane
        password = settings.mqtt_password.get_secret_value()
        own_id = client_id(settings, lane)
        self.link = MqttLink(
            LinkOptions(
                name="alerts" if lane is Lane.BULK else "alerts-edge",
                endpoint=settings.endpoint,
                client_id=own_id,
                names=settings.setting_names(),
                username=settings.mqtt_username or None,
                password=password if settings.mqtt_username else None,
                tls=settings.tls_files(),
                session_expiry_s=settings.session_expiry_s,
                clean_start=False,
                manual_ack=True,
                receive_maximum=settings.receive_maximum,
                max_inflight=100,
                backoff_min_s=0.5,
                backoff_max_s=30.0,
                context={"client_id": own_id},
            ),
            on_connect=self._on_connect,
            on_message=self._on_message,
        )

    def start(self) -> None:
        self.link.start()

    def close(self) -> None:
        """A clean DISCONNECT: the session stays on the broker for its expiry."""
        self.link.disconnect()

    @property
    def connected(self) -> bool:
        return self.link.connected.is_set()

    def ack(self, messages: list[Message]) -> None:
        """Acknowledge this session's messages among ``messages`` (a committed round's)."""
        for m in messages:
            if m.qos and m.lane is self.lane:
                self.link.ack(m.mid, m.generation)

    # paho's network thread
    def _on_connect(self, client: mqtt.Client, props: Properties | None) -> None:
        # every connect, session present or not (a restarted broker may have lost it); the
        # retained births and Last Wills come only with a new subscription, not each reconnect
        options = SubscribeOptions(qos=1, retainHandling=SubscribeOptions.RETAIN_SEND_IF_NEW_SUB)
        self.link.subscribe([(f, options) for f in filters(self.lane)])
        if self.lane is Lane.BULK:
            # a session an older engine made still carries the edge alerts: the edge
            # session has them now (harmless when there is no such subscription)
            client.unsubscribe(alert_filter())

    def _on_message(self, msg: mqtt.MQTTMessage, generation: int) -> None:
        self.inbox.put(
            Message(
                msg.topic,
                bytes(msg.payload),
                msg.mid,
                msg.qos,
                generation,
                time.monotonic(),
                self.lane,
            )
        )
