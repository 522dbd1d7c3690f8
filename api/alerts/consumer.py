"""The engine's own persistent MQTT session on the central broker.

A :class:`mqttlink.paho_link.MqttLink` with a fixed client id
(``gl-alerts-{host}``), ``clean_start=False`` and a session expiry, so what
arrives while the engine restarts waits for it on the broker. Subscriptions
(not shared: the engine's state is keyed by subject, see docs/alerts.md) to the
gateway envelopes, the readings published straight to the central broker and
the ``state`` messages and the alerts raised at the centres' gateways
(``_gateway/alert``), all QoS 1 and acknowledged by hand: only after the
round that evaluated a message committed (:meth:`Consumer.ack`).

``_on_message`` runs on paho's network thread and only queues the message. The
queue is bounded (``receive_maximum`` plus room for QoS 0 messages): the broker
never has more than ``receive_maximum`` unacknowledged QoS 1 messages out to
us, so a full queue can only mean a flood of QoS 0; then the network thread
waits (TCP pushes back to the broker).
"""

from __future__ import annotations

import queue
import time
from dataclasses import dataclass
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


@dataclass(frozen=True, slots=True)
class Message:
    topic: str
    payload: bytes
    mid: int
    qos: int
    generation: int
    arrived: float  # time.monotonic() when it reached us


def filters() -> list[str]:
    return [subscription(channel) for channel in CHANNELS] + [alert_filter()]


class Consumer:
    def __init__(self, settings: AlertsSettings) -> None:
        self.queue: queue.Queue[Message] = queue.Queue(settings.receive_maximum + QOS0_ROOM)
        password = settings.mqtt_password.get_secret_value()
        self.link = MqttLink(
            LinkOptions(
                name="alerts",
                endpoint=settings.endpoint,
                client_id=settings.client_id,
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
                context={"client_id": settings.client_id},
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
        for m in messages:
            if m.qos:
                self.link.ack(m.mid, m.generation)

    # paho's network thread
    def _on_connect(self, client: mqtt.Client, props: Properties | None) -> None:
        # every connect, session present or not (a restarted broker may have lost it); the
        # retained births and Last Wills come only with a new subscription, not each reconnect
        options = SubscribeOptions(qos=1, retainHandling=SubscribeOptions.RETAIN_SEND_IF_NEW_SUB)
        self.link.subscribe([(f, options) for f in filters()])

    def _on_message(self, msg: mqtt.MQTTMessage, generation: int) -> None:
        self.queue.put(
            Message(msg.topic, bytes(msg.payload), msg.mid, msg.qos, generation, time.monotonic())
        )
