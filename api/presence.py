"""Presence: follows ``gl/v1/+/+/state`` on the central broker and keeps online/last-seen.

``_on_message`` runs on paho's thread and only parses and records the newest state
per device in a dict (bounded: ``MAX_PENDING`` devices; when full, states of
devices not yet in it are dropped and counted, the retained state brings them
back at the next reconnect); a birth's ``fw`` becomes the device's
``firmware_version``. A worker thread writes the dict to the registry
every ``interval`` seconds. A device that comes online for the first time
becomes ``active``. A gateway that comes online (after being offline or never
seen) is handed to ``on_gateway_online``: the API re-sends it its centre's
credentials, since updates published before its first subscription reached nobody.

The connection is a :class:`mqttlink.paho_link.MqttLink` built from the API's
:class:`api.broker.BrokerAccess` (TLS, reconnects and reason codes shared).
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

import paho.mqtt.client as mqtt
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from api.broker import BrokerAccess
from api.db.models import Device
from api.errors import BrokerUnavailable
from contract.codec import DecodeError, decode
from contract.metrics import DeviceKind
from contract.topics import Channel, Topic, TopicError, subscription
from mqttlink.paho_link import MqttLink
from runtime.logs import Throttle

log = logging.getLogger(__name__)
MAX_PENDING = 100_000


class Presence:
    def __init__(
        self,
        access: BrokerAccess,
        sessions: sessionmaker[Session],
        *,
        interval: float = 0.5,
        on_gateway_online: Callable[[Session, Device], None] | None = None,
    ) -> None:
        self._sessions = sessions
        self._on_gateway_online = on_gateway_online
        self._interval = interval
        self._pending: dict[tuple[str, str], tuple[bool, datetime, str | None]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.dropped = 0
        self.invalid = 0
        self._throttle = Throttle(log)  # a device may send bad births as fast as it likes
        self.applied = 0
        self._link = MqttLink(
            access.link_options("api-presence", f"gl-api-presence-{uuid.uuid4().hex[:8]}"),
            on_connect=self._on_connect,
            on_message=self._on_message,
        )
        self._worker = threading.Thread(target=self._run, name="presence-writer", daemon=True)

    def start(self) -> None:
        self._link.start()
        self._worker.start()

    def close(self) -> None:
        self._stop.set()
        self._link.disconnect()
        self._worker.join(timeout=5)
        self.flush()

    @property
    def link(self) -> MqttLink:
        return self._link

    def _on_connect(self, client: mqtt.Client, props: Properties | None) -> None:
        self._link.subscribe([(subscription(Channel.STATE), SubscribeOptions(qos=1))])

    def _on_message(self, msg: mqtt.MQTTMessage, generation: int) -> None:
        try:
            topic = Topic.parse(msg.topic)
            state = decode(Channel.STATE, bytes(msg.payload))
        except (TopicError, DecodeError) as exc:
            self.invalid += 1
            self._throttle.warning(
                "bad_state", topic=msg.topic[:120], error=exc, invalid=self.invalid
            )
            return
        key = (topic.centre, topic.device)
        with self._lock:
            if key not in self._pending and len(self._pending) >= MAX_PENDING:
                self.dropped += 1
                return
            self._pending[key] = (bool(state.online), datetime.now(UTC), state.fw)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.flush()
            except Exception:  # the writer's outermost loop: log and keep going
                log.exception("event=presence_flush_failed")

    def flush(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, {}
        if not pending:
            return
        with self._sessions.begin() as session:
            for (centre, device), (online, seen, fw) in pending.items():
                if online and self._on_gateway_online is not None:
                    self._maybe_seed(session, centre, device)
                values: dict[str, object] = {"online": online, "last_seen": seen}
                if fw:  # the version a device announces in its birth (after an OTA too)
                    values["firmware_version"] = fw
                session.execute(
                    update(Device)
                    .where(Device.id == device, Device.centre_id == centre)
                    .values(**values)
                )
                if online:
                    session.execute(
                        update(Device)
                        .where(Device.id == device, Device.status == "provisioned")
                        .values(status="active")
                    )
        self.applied += len(pending)

    def _maybe_seed(self, session: Session, centre: str, device_id: str) -> None:
        device = session.get(Device, device_id)
        if (
            device is None
            or device.centre_id != centre
            or device.kind != DeviceKind.GATEWAY.value
            or device.online
        ):
            return
        assert self._on_gateway_online is not None
        try:
            self._on_gateway_online(session, device)
            log.info("event=gateway_online_resync centre=%s gateway=%s", centre, device_id)
        except BrokerUnavailable:  # logged; tried again when the gateway next comes online
            log.exception("event=gateway_resync_failed centre=%s gateway=%s", centre, device_id)
