"""The API's device-management link to the central broker: commands, twins, gateway acks.

Publishes commands (QoS 1, message expiry) and desired twins (QoS 1, retained)
and follows ``gl/v1/+/+/cmd/ack`` and ``gl/v1/+/+/twin/reported``, and the
gateways' answers to their downlink updates, ``gl/v1/+/+/_gateway/rules/ack``
(``EdgeRulesAck``) and ``gl/v1/+/+/_gateway/dynsec/ack`` (``DynsecAck``), which
:mod:`api.services.gateway_downlink` records (an answer that changes nothing, a
stale or unknown one, is counted in ``stale`` / ``unknown`` and logged, throttled).
``_on_message`` runs on paho's thread and only decodes and queues what came
(a bounded queue of ``MAX_PENDING``; when full a message is dropped and
counted: a lost acknowledgement leaves its command ``delivered`` or, swept,
``expired``; a lost report comes back retained at the next reconnect). The
``device-commands`` thread writes the queue to the registry, sweeps expired
commands and publishes waiting batch commands at ``rate_per_s`` (a token
bucket holding at most one second's worth, and at least one command), every ``interval`` seconds;
after a tick that wrote acknowledgements it calls ``on_acks`` (the campaign
runner, which sends its ``ota`` commands through this link, looks at once).

The session is clean (:meth:`api.broker.BrokerAccess.link_options`): what waits
for a device is held by the device's own persistent session on the broker, not
by ours; the API holds the command rows.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions
from sqlalchemy.orm import Session, sessionmaker

from api.broker import BrokerAccess
from api.errors import BrokerUnavailable
from api.services import commands, gateway_downlink, twins
from api.services.gateway_downlink import Outcome
from contract.codec import DecodeError, decode, encode
from contract.edge import (
    RULES_ACK_CHANNEL,
    EdgeRulesAck,
    decode_rules_ack,
    gateway_of,
    rules_ack_filter,
)
from contract.messages import Command, CommandAck, Twin
from contract.provisioning import (
    DYNSEC_ACK_CHANNEL,
    DynsecAck,
    decode_dynsec_ack,
    dynsec_ack_filter,
)
from contract.topics import Channel, Topic, TopicError, subscription, topic
from mqttlink.paho_link import MqttLink
from runtime.logs import Throttle, kv

log = logging.getLogger(__name__)
MAX_PENDING = 100_000

_Item = tuple[str, str, CommandAck | Twin | EdgeRulesAck | DynsecAck]


class DeviceLink:
    def __init__(
        self,
        access: BrokerAccess,
        sessions: sessionmaker[Session],
        *,
        rate_per_s: float = 20.0,
        interval: float = 0.5,
    ) -> None:
        self._sessions = sessions
        self._rate = rate_per_s
        self._interval = interval
        self._queue: queue.Queue[_Item] = queue.Queue(MAX_PENDING)
        self._stop = threading.Event()
        self._throttle = Throttle(log)
        self.dropped = 0
        self.invalid = 0
        self.unknown = 0
        self.stale = 0
        self._tokens = 0.0
        self._last = time.monotonic()
        self.on_acks: Callable[[], None] | None = None
        self._link = MqttLink(
            access.link_options("api-devices", f"gl-api-devices-{uuid.uuid4().hex[:8]}"),
            on_connect=self._on_connect,
            on_message=self._on_message,
        )
        self._worker = threading.Thread(target=self._run, name="device-commands", daemon=True)

    @property
    def link(self) -> MqttLink:
        return self._link

    def start(self) -> None:
        self._link.start()
        self._worker.start()

    def close(self) -> None:
        self._stop.set()
        self._worker.join(timeout=5)
        self._link.disconnect()

    # -- publishing (request threads and the worker) -------------------------------------------
    def _publish(self, topic_: str, payload: bytes, *, retain: bool, expiry_s: int | None) -> None:
        props: Properties | None = None
        if expiry_s is not None:
            props = Properties(PacketTypes.PUBLISH)
            props.MessageExpiryInterval = expiry_s
        info = self._link.publish(topic_, payload, retain=retain, properties=props)
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            raise BrokerUnavailable(f"publish to the broker failed ({mqtt.error_string(info.rc)})")

    def publish_command(self, centre: str, device: str, command: Command, expiry_s: int) -> None:
        self._publish(
            topic(centre, device, Channel.CMD), encode(command), retain=False, expiry_s=expiry_s
        )

    def publish_twin(self, centre: str, device: str, twin: Twin) -> None:
        self._publish(
            topic(centre, device, Channel.TWIN_DESIRED), encode(twin), retain=True, expiry_s=None
        )

    # -- paho's thread -------------------------------------------------------------------------
    def _on_connect(self, client: mqtt.Client, props: Properties | None) -> None:
        opts = SubscribeOptions(qos=1)
        self._link.subscribe(
            [
                (subscription(Channel.CMD_ACK), opts),
                (subscription(Channel.TWIN_REPORTED), opts),
                (rules_ack_filter(), opts),
                (dynsec_ack_filter(), opts),
            ]
        )

    def _on_message(self, msg: mqtt.MQTTMessage, generation: int) -> None:
        item: _Item
        try:
            if "/_gateway/" in msg.topic:
                item = _gateway_ack(msg.topic, bytes(msg.payload))
            else:
                found = Topic.parse(msg.topic)
                message = decode(found.channel, bytes(msg.payload))
                if not isinstance(message, CommandAck | Twin):
                    return
                item = (found.centre, found.device, message)
        except (TopicError, DecodeError) as exc:
            self.invalid += 1
            self._throttle.warning(
                "bad_device_reply", topic=msg.topic[:120], error=exc, invalid=self.invalid
            )
            return
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self.dropped += 1
            self._throttle.warning("device_reply_dropped", dropped=self.dropped)

    # -- the worker ----------------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.tick()
            except Exception:  # the worker's outermost loop: log and keep going
                log.exception("event=device_commands_failed")

    def _gateway_ack(
        self, session: Session, centre: str, gateway: str, ack: EdgeRulesAck | DynsecAck
    ) -> None:
        if isinstance(ack, EdgeRulesAck):
            outcome = gateway_downlink.on_rules_ack(session, centre, gateway, ack)
            what = "rules"
        else:
            outcome = gateway_downlink.on_credentials_ack(session, centre, gateway, ack)
            what = "credentials"
        if outcome is Outcome.RECORDED:
            if not ack.ok:  # a gateway refusing every update is one line a minute
                self._throttle.warning(
                    "gateway_update_rejected",
                    f"rejected/{centre}/{gateway}/{what}",
                    centre=centre,
                    gateway=gateway,
                    downlink=what,
                    seq=ack.seq,
                    error=ack.error,
                )
            return
        if outcome is Outcome.STALE:
            self.stale += 1
        else:
            self.unknown += 1
        self._throttle.log(
            logging.INFO,
            "gateway_ack_ignored",
            centre=centre,
            gateway=gateway,
            downlink=what,
            seq=ack.seq,
            reason=outcome.value,
            stale=self.stale,
            unknown=self.unknown,
        )

    def tick(self) -> None:
        """Write what came, expire what is overdue, publish the next batch commands."""
        items: list[_Item] = []
        while len(items) < 10_000:
            try:
                items.append(self._queue.get_nowait())
            except queue.Empty:
                break
        now_mono = time.monotonic()
        refill = (now_mono - self._last) * self._rate
        self._tokens = min(max(self._rate, 1.0), self._tokens + refill)
        self._last = now_mono
        with self._sessions.begin() as session:
            for centre, device, message in items:
                if isinstance(message, CommandAck):
                    known = commands.apply_ack(session, centre, device, message)
                elif isinstance(message, Twin):
                    known = twins.store_reported(session, centre, device, message)
                else:
                    self._gateway_ack(session, centre, device, message)
                    continue
                if not known:
                    self.unknown += 1
            session.flush()
            now = datetime.now(UTC)
            expired = commands.sweep(session, now)
            sent = commands.dispatch(session, self, int(self._tokens), now)
            self._tokens -= sent
        if expired or sent:
            log.info(kv("commands_tick", expired=expired, sent=sent, replies=len(items)))
        if self.on_acks is not None and (
            expired or any(isinstance(m, CommandAck) for *_, m in items)
        ):
            self.on_acks()


def _gateway_ack(name: str, payload: bytes) -> _Item:
    """A gateway's answer to a downlink update; raises TopicError / DecodeError."""
    centre, gateway, channel = gateway_of(name)
    if channel == RULES_ACK_CHANNEL:
        return centre, gateway, decode_rules_ack(payload)
    if channel == DYNSEC_ACK_CHANNEL:
        return centre, gateway, decode_dynsec_ack(payload)
    raise TopicError(f"not a gateway acknowledgement: {name[:120]!r}")
