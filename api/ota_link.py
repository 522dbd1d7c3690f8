"""The campaign runner's MQTT connection: sends ``ota`` commands, follows acks and births.

Kept apart on purpose: the command service of issue #15 (``POST
/v1/devices/{id}/commands``) has its own sender and ``cmd/ack`` follower; at the
merge the runner should send through that service instead (see docs/api.md,
"Firmware campaigns"). Until then this link publishes a contract
:class:`~contract.messages.Command` on the device's ``cmd`` topic (QoS 1) with
the expiry both in the message and as the MQTT v5 message expiry, so neither a
broker nor a gateway on the way delivers it late.

Callbacks run on paho's thread and only put events on a bounded queue the
runner drains; a full queue drops the event and counts it (the runner's expiry
and the retained birth bring the truth back).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from dataclasses import dataclass

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from api.broker import BrokerAccess
from contract.codec import DecodeError, decode
from contract.messages import Command, CommandAck, State
from contract.topics import Channel, Topic, TopicError, subscription, topic
from mqttlink.paho_link import MqttLink

log = logging.getLogger(__name__)
MAX_EVENTS = 100_000


@dataclass(frozen=True, slots=True)
class AckEvent:
    centre: str
    device: str
    ack: CommandAck


@dataclass(frozen=True, slots=True)
class StateEvent:
    centre: str
    device: str
    state: State


Event = AckEvent | StateEvent


class OtaLink:
    def __init__(self, access: BrokerAccess) -> None:
        self.events: queue.Queue[Event] = queue.Queue(MAX_EVENTS)
        self.dropped = 0
        self.arrived = threading.Event()  # wakes the runner
        self.link = MqttLink(
            access.link_options("api-ota", f"gl-api-ota-{uuid.uuid4().hex[:8]}"),
            on_connect=self._on_connect,
            on_message=self._on_message,
        )

    def start(self) -> None:
        self.link.start()

    def close(self) -> None:
        self.link.disconnect()

    def send(self, centre: str, device: str, command: Command, ttl_s: int) -> bool:
        """Publish ``command`` (QoS 1); False when the link is down (sent again later)."""
        if not self.link.connected.is_set():
            return False
        props = Properties(PacketTypes.PUBLISH)
        props.MessageExpiryInterval = max(1, int(ttl_s))
        info = self.link.publish(
            topic(centre, device, Channel.CMD),
            command.model_dump_json(exclude_none=True).encode(),
            properties=props,
        )
        return info.rc == mqtt.MQTT_ERR_SUCCESS

    def _on_connect(self, client: mqtt.Client, props: Properties | None) -> None:
        opts = SubscribeOptions(qos=1)
        self.link.subscribe(
            [(subscription(Channel.CMD_ACK), opts), (subscription(Channel.STATE), opts)]
        )

    def _on_message(self, msg: mqtt.MQTTMessage, generation: int) -> None:
        try:
            where = Topic.parse(msg.topic)
            body = decode(where.channel, bytes(msg.payload))
        except (TopicError, DecodeError):
            return  # presence and the command service report bad messages
        event: Event
        if isinstance(body, CommandAck):
            event = AckEvent(where.centre, where.device, body)
        elif isinstance(body, State):
            event = StateEvent(where.centre, where.device, body)
        else:
            return
        try:
            self.events.put_nowait(event)
            self.arrived.set()
        except queue.Full:
            self.dropped += 1


def expiry_ms(ttl_s: int) -> int:
    return int(time.time() * 1000) + ttl_s * 1000
