"""The MQTT side: a persistent MQTT v5 session with manual acknowledgements.

The paho alternative (``mqtt_client = "paho"``) to :mod:`ingest.mqtt_consumer`.

Runs on paho's network thread (everything named ``_on_*``): it only parses the
retained ``state`` births into the model cache and hands data messages to a
bounded queue; decoding and writing happen elsewhere.

- fixed client id, ``clean_start`` off, session expiry set: a restarted worker
  gets what was queued for it while it was down;
- Receive Maximum = ``receive_maximum``: the broker never has more unacknowledged
  QoS 1 messages in flight to us, so the inbound queue (bounded at twice that)
  never fills with QoS 1 data; a flood of QoS 0 messages blocks the network
  thread instead (TCP backpressure) -- policy when full: wait;
- acknowledgements name the connection ``generation`` they belong to: after a
  reconnect the broker redelivers what was unacknowledged, so a late ack for the
  old connection is dropped (the redelivered copy is stored and acknowledged again);
- subscriptions are replayed after every connect; paho reconnects with backoff;
  refused credentials stop the worker.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from contract.codec import DecodeError, decode
from contract.topics import Channel, Topic, TopicError, shared, subscription
from ingest.batcher import Ack
from ingest.points import ModelCache
from ingest.settings import IngestSettings
from runtime.logs import kv

log = logging.getLogger("ingest.subscriber")
DATA_CHANNELS = (Channel.GATEWAY_BATCH, Channel.TELEMETRY, Channel.EVENT)
STATE_SUFFIX = "/" + Channel.STATE.value
AUTH_FAILURES = {"Bad user name or password", "Not authorized", "Banned"}


@dataclass(frozen=True, slots=True)
class Inbound:
    topic: str
    payload: bytes
    ack: Ack | None


class Subscriber:
    def __init__(self, settings: IngestSettings, models: ModelCache) -> None:
        self.settings = settings
        self.models = models
        self.inbound: queue.Queue[list[Inbound]] = queue.Queue(maxsize=2 * settings.receive_maximum)
        self.fatal: str | None = None
        self.generation = 0
        self.down_since: float | None = time.monotonic()
        self.subscribed = False
        self._lock = threading.Lock()
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=settings.client_id,
            protocol=mqtt.MQTTv5,
            manual_ack=True,
        )
        if settings.mqtt_username:
            password = settings.mqtt_password.get_secret_value() if settings.mqtt_password else None
            client.username_pw_set(settings.mqtt_username, password)
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        self._client = client

    def filters(self) -> list[tuple[str, SubscribeOptions]]:
        return [(f, SubscribeOptions(qos=1)) for f in subscription_filters(self.settings)]

    def start(self) -> None:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self.settings.session_expiry_s
        props.ReceiveMaximum = self.settings.receive_maximum
        self._client.connect_async(
            self.settings.mqtt_host,
            self.settings.mqtt_port,
            keepalive=self.settings.keepalive_s,
            clean_start=False,
            properties=props,
        )
        self._client.loop_start()

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    @property
    def connected(self) -> bool:
        return self.down_since is None

    def ack(self, ack: Ack) -> bool:
        """Acknowledge one message; False if it belonged to an earlier connection."""
        with self._lock:
            if ack.generation != self.generation or self.down_since is not None:
                return False
            self._client.ack(ack.mid, ack.qos)
            return True

    def ack_many(self, acks: list[Ack]) -> int:
        return sum(self.ack(ack) for ack in acks)

    # --- paho's network thread -------------------------------------------------

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, rc: Any, props: Any
    ) -> None:
        if rc.is_failure:
            log.error(kv("mqtt_connect_refused", reason=str(rc), client_id=self.settings.client_id))
            if str(rc) in AUTH_FAILURES:
                self.fatal = f"MQTT broker refused the credentials: {rc}"
            return
        with self._lock:
            self.generation += 1
            self.down_since = None
        log.info(
            kv(
                "mqtt_connected",
                client_id=self.settings.client_id,
                session_present=flags.session_present,
                generation=self.generation,
            )
        )
        client.subscribe(self.filters())

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, rc: Any, props: Any
    ) -> None:
        with self._lock:
            self.subscribed = False
            if self.down_since is None:
                self.down_since = time.monotonic()
        log.warning(kv("mqtt_disconnected", reason=str(rc), client_id=self.settings.client_id))

    def _on_subscribe(
        self, client: mqtt.Client, userdata: Any, mid: int, codes: list[Any], props: Any
    ) -> None:
        refused = [str(code) for code in codes if code.is_failure]
        if refused:
            self.fatal = f"MQTT broker refused the subscriptions: {', '.join(refused)}"
            return
        self.subscribed = True

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        topic = msg.topic
        if topic.endswith(STATE_SUFFIX):
            parse_state(self.models, topic, bytes(msg.payload))
            if msg.qos:
                client.ack(msg.mid, msg.qos)
            return
        ack = Ack(msg.mid, msg.qos, self.generation) if msg.qos else None
        self.inbound.put([Inbound(topic, bytes(msg.payload), ack)])


def subscription_filters(settings: IngestSettings) -> list[str]:
    """The unshared ``state`` filter, then the shared data filters of the worker's group."""
    data = [shared(settings.share_group, subscription(ch)) for ch in DATA_CHANNELS]
    return [subscription(Channel.STATE), *data]


def parse_state(models: ModelCache, topic: str, payload: bytes) -> None:
    """A retained birth: remember the device's model (anything unusable is logged, ignored)."""
    try:
        where = Topic.parse(topic)
        state = decode(Channel.STATE, payload)
    except (TopicError, DecodeError) as exc:
        log.info(kv("state_ignored", topic=topic[:120], error=str(exc)[:200]))
        return
    models.learn(where.centre, where.device, state.model, state.kind)
