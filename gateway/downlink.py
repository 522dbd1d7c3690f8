"""Downlink: ``cmd`` and ``twin/desired`` from the central broker to the centre's devices.

Routes are (subscription filter, handler) pairs; :meth:`Downlink.add_route` adds
another (e.g. the gateway's own ``_gateway/...`` topics) without touching the
relay. Subscriptions are made again after every connect, with
``retainAsPublished`` so a retained twin stays retained on the local broker. A
``cmd`` keeps its MQTT v5 message expiry (the broker has already counted down
the time it waited), so a stale command expires on the local broker too; and a
command whose own ``expires`` has passed by the gateway's clock (when that
clock is synced) is not relayed at all: a copy the central broker sends again
after a reconnect (one that was in flight when the uplink went) may come
without its expiry counted down. With
the firmware cache on, an ``ota`` command's ``url`` is rewritten to the
gateway's copy (:mod:`gateway.ota_rewrite`).

The central message is acknowledged (paho ``manual_ack``) only when the local
broker acknowledged the relayed copy; until then the central broker keeps it.
A payload that breaks the contract is counted, logged and acknowledged (never
relayed). Callbacks run on the two links' network threads; the shared table of
pending relays is guarded by a lock that is never held while calling paho.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from contract.codec import DecodeError, decode
from contract.messages import Command
from contract.topics import Channel, Topic, TopicError, subscription
from mqttlink.paho_link import MqttLink
from mqttlink.reasons import delivered, reason
from runtime.logs import Throttle, kv

log = logging.getLogger(__name__)

Handler = Callable[[mqtt.MQTTMessage, int], None]


@dataclass(frozen=True, slots=True)
class _Origin:
    mid: int
    generation: int


class Downlink:
    """Relays central → local and acknowledges the central copy afterwards."""

    def __init__(
        self,
        centre: str,
        local: MqttLink | None = None,
        now_ms: Callable[[], int | None] = lambda: None,
    ) -> None:
        """``now_ms``: the gateway's wall clock in ms, None while it is not to be trusted."""
        self.centre = centre
        self.local = local
        self.now_ms = now_ms
        self.central: MqttLink | None = None
        self._routes: list[tuple[str, Handler]] = []
        self._lock = threading.Lock()
        self._pending: dict[int, _Origin] = {}
        self._early: set[int] = set()
        self.relayed_total = 0
        self.expired_total = 0
        self.rejected_total = 0
        self.undelivered_total = 0
        self._throttle = Throttle(log)
        # set with the firmware cache: an ``ota`` command points at the gateway's copy
        self.rewrite: Callable[[Command, bytes], bytes] | None = None
        self.add_route(subscription(Channel.CMD, centre), self._relay)
        self.add_route(subscription(Channel.TWIN_DESIRED, centre), self._relay)

    def attach(self, local: MqttLink, central: MqttLink) -> None:
        self.local = local
        self.central = central

    def add_route(self, filter_: str, handler: Handler) -> None:
        """Subscribe ``filter_`` on the central broker; ``handler`` gets its messages."""
        self._routes.append((filter_, handler))

    # -- central network thread --------------------------------------------------------------
    def on_connect(self, client: mqtt.Client, props: Properties | None) -> None:
        assert self.central is not None
        opts = SubscribeOptions(qos=1, retainAsPublished=True)
        self.central.subscribe([(f, opts) for f, _ in self._routes])

    def on_message(self, msg: mqtt.MQTTMessage, generation: int) -> None:
        for filter_, handler in self._routes:
            if mqtt.topic_matches_sub(filter_, msg.topic):
                handler(msg, generation)
                return
        self._ack_central(_Origin(msg.mid, generation))

    def _relay(self, msg: mqtt.MQTTMessage, generation: int) -> None:
        origin = _Origin(msg.mid, generation)
        payload = bytes(msg.payload)
        try:
            topic = Topic.parse(msg.topic)
            body = decode(topic.channel, payload)
        except (DecodeError, TopicError) as exc:
            self.rejected_total += 1
            log.warning(
                kv("downlink_rejected", centre=self.centre, topic=msg.topic[:120], error=exc)
            )
            self._ack_central(origin)
            return
        assert self.local is not None
        if isinstance(body, Command) and self._expired(body):
            self.expired_total += 1
            log.info(kv("downlink_expired", centre=self.centre, device=topic.device, id=body.id))
            self._ack_central(origin)
            return
        if self.rewrite is not None and isinstance(body, Command):
            payload = self.rewrite(body, payload)
        props: Properties | None = None
        expiry = getattr(msg.properties, "MessageExpiryInterval", None)
        if expiry is not None:
            props = Properties(PacketTypes.PUBLISH)
            props.MessageExpiryInterval = expiry
        info = self.local.publish(msg.topic, payload, retain=msg.retain, properties=props)
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            log.warning(kv("downlink_relay_failed", centre=self.centre, rc=info.rc))
            return  # not acknowledged: the central broker sends it again after a reconnect
        with self._lock:
            early = info.mid in self._early
            if early:
                self._early.discard(info.mid)
            else:
                self._pending[info.mid] = origin
        if early:
            self._ack_central(origin)
        log.info(kv("downlink_relayed", centre=self.centre, device=topic.device, ch=topic.channel))

    def _expired(self, command: Command) -> bool:
        if command.expires is None:
            return False
        now = self.now_ms()
        return now is not None and now > command.expires

    # -- local network thread ----------------------------------------------------------------
    def on_local_puback(self, mid: int, code: int) -> None:
        """The local broker answered a relayed copy: the central one is acknowledged.

        Not delivered (no subscriber: the device is offline without a session; or
        an error code) is counted and logged, not retried: the central copy's
        retained twin, or the API's command expiry, is the retry policy downlink.
        """
        if not delivered(code):
            self.undelivered_total += 1
            self._throttle.warning(
                "downlink_not_delivered", centre=self.centre, reason=reason(code)
            )
        with self._lock:
            origin = self._pending.pop(mid, None)
            if origin is None:
                self._early.add(mid)
                return
        self.relayed_total += 1
        self._ack_central(origin)

    def _ack_central(self, origin: _Origin) -> None:
        if self.central is not None:
            self.central.ack(origin.mid, origin.generation)
