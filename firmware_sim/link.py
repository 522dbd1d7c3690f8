"""One MQTT connection: per device (realistic) or per centre (load tests).

Owns a paho client driven by the fleet's :class:`NetLoop`. On every connect it
subscribes to its devices' ``cmd`` and ``twin/desired`` and publishes their
retained birth ``state``. The Last Will (retained ``online: false``) carries an
MQTT v5 Will Delay Interval and the session an expiry, so a short drop does not
flap. Reconnects use jittered, capped backoff owned here.

Reason codes are read by value (:mod:`mqttlink.reasons`): a permanent CONNACK
refusal, a DISCONNECT 0x8E (another client took the session) or a refused
subscription stops the link with a :class:`Refusal` (``fatal`` holds its one
line; counted, logged once); transient ones retry. A PUBACK that is not
``delivered()`` (an error code, or 0x10: nobody subscribed) is counted in
``Counters.undelivered``. ``mqtts://``: the fleet builds one ``ssl.SSLContext``
(``GRAMLINK_SIM_MQTT_CA_FILE`` ...) for every link; a broker certificate that
CA did not sign is logged once a minute per fleet naming that setting, and
retried.

This client is driven by the fleet's :class:`NetLoop` (one thread for hundreds
of devices), so it is not an :class:`mqttlink.paho_link.MqttLink` (a thread per
connection); it shares the endpoint, TLS and reason table with it.

Buffers: paho's queue per connection is bounded by ``max_queued`` QoS 1
messages; when it is full (a long offline period) new readings are dropped and
counted (policy: keep the oldest, drop the newest). QoS 0 readings published
while disconnected are dropped and counted.
"""

from __future__ import annotations

import contextlib
import logging
import random
import socket
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Final

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from contract.codec import DecodeError, decode
from contract.messages import Command, Twin
from contract.topics import Channel, Topic, TopicError, subscription
from firmware_sim.devices.base import Device
from firmware_sim.netloop import NetLoop
from firmware_sim.settings import SETTING_NAMES
from firmware_sim.stats import Counters
from mqttlink.endpoint import Endpoint, is_certificate_refusal
from mqttlink.reasons import Refusal, delivered, reason, subscription_refused
from runtime.backoff import Backoff
from runtime.logs import Throttle

log = logging.getLogger(__name__)

BACKOFF_MIN_S: Final = 0.5
BACKOFF_MAX_S: Final = 30.0
_RC_QUEUE: Final = mqtt.MQTTErrorCode.MQTT_ERR_QUEUE_SIZE
_RC_NO_CONN: Final = mqtt.MQTTErrorCode.MQTT_ERR_NO_CONN

CommandSink = Callable[[Device, Command | Twin, float | None], None]
"""(device, command or desired twin, MQTT expiry deadline as wall time or None)."""


class Link:
    """One paho client publishing for ``devices`` (one device, or a whole centre)."""

    def __init__(
        self,
        loop: NetLoop,
        client_id: str,
        host: str,
        port: int,
        username: str | None,
        password: str | None,
        devices: Sequence[Device],
        *,
        counters: Counters,
        on_command: CommandSink,
        now_ms: Callable[[], int],
        centre_wide: bool = False,
        will_delay_s: int = 5,
        session_expiry_s: int = 300,
        keepalive_s: int = 30,
        max_inflight: int = 1000,
        max_queued: int = 10_000,
        rng: random.Random | None = None,
        tls: ssl.SSLContext | None = None,
        throttle: Throttle | None = None,
    ) -> None:
        self.loop = loop
        self.client_id = client_id
        self.host, self.port = host, port
        self.devices = {d.device_id: d for d in devices}
        self.centre = devices[0].centre
        self.counters = counters
        self.on_command = on_command
        self.now_ms = now_ms
        self.centre_wide = centre_wide
        self.keepalive_s = keepalive_s
        self.session_expiry_s = session_expiry_s
        self.max_outstanding = max(1, max_inflight + max_queued // 2)
        self.rng = rng or random.Random(client_id)
        self.connected = False
        self.fatal: str | None = None  # the refusal's one line
        self.refusal: Refusal | None = None
        self.tls = tls
        self.throttle = throttle or Throttle(log)
        self.offline_until = 0.0  # monotonic: a fault-injected offline period
        self._stopping = False
        self._backoff = Backoff(BACKOFF_MIN_S, BACKOFF_MAX_S, self.rng)
        self._retry_at: float | None = None
        self._count_lock = threading.Lock()  # _sent is written by scheduler, workers, net thread
        self._sent = 0  # publishes this link queued (any thread)
        self._done = 0  # publishes finished (net thread)
        self._room = threading.Event()
        self._room.set()
        self.first_connect = threading.Event()

        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5
        )
        if username is not None:
            client.username_pw_set(username, password)
        client.max_inflight_messages_set(max_inflight)
        client.max_queued_messages_set(max_queued)
        if tls is not None:
            client.tls_set_context(tls)
        will_device = devices[0]
        will_props = Properties(PacketTypes.WILLMESSAGE)
        will_props.WillDelayInterval = will_delay_s
        client.will_set(will_device.topics[Channel.STATE], will_device.will(), 1, True, will_props)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_publish = self._on_publish
        client.on_subscribe = self._on_subscribe
        loop.attach(client)
        loop.every_tick(self._tick)
        self.client = client
        for device in devices:
            device.send = self.send
            if not centre_wide:
                device.restart_link = self.restart

    # --- connect and reconnect (network thread) ----------------------------------------------
    def start(self) -> None:
        self.loop.call_soon(self._connect)

    def _connect(self) -> None:
        if self._stopping or self.fatal:
            return
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self.session_expiry_s
        try:
            if self._backoff.attempt == 0 and not self.first_connect.is_set():
                self.client.connect(
                    self.host, self.port, self.keepalive_s, clean_start=False, properties=props
                )
            else:
                self.client.reconnect()
        except OSError as exc:  # ssl.SSLError too
            self.counters.errors += 1
            if is_certificate_refusal(exc):
                self.throttle.error(
                    "broker_certificate_untrusted",
                    url=self.url,
                    detail=str(exc)[:200],
                    check=SETTING_NAMES.ca_file,
                )
            self._schedule_retry(f"connect failed: {exc}")

    @property
    def url(self) -> str:
        return str(Endpoint(self.host, self.port, self.tls is not None))

    def _refuse(self, what: str, found_code: int, *, subscription: bool = False) -> None:
        found = subscription_refused(found_code) if subscription else reason(found_code)
        self.refusal = Refusal.of(what, found, self.url, SETTING_NAMES)
        self.fatal = self.refusal.line
        log.error(
            "event=link_refused centre=%s client=%s reason=%r detail=%r",
            self.centre,
            self.client_id,
            str(found),
            self.refusal.line,
        )
        self.first_connect.set()

    def _schedule_retry(self, why: str) -> None:
        delay = self._backoff.next()
        attempt = self._backoff.attempt
        if attempt in (1, 5) or attempt % 50 == 0:
            log.warning(
                "event=link_down centre=%s client=%s attempt=%d retry_s=%.1f reason=%r",
                self.centre,
                self.client_id,
                attempt,
                delay,
                why,
            )
        self._retry_at = time.monotonic() + delay

    def _tick(self, now: float) -> None:
        if self.connected and self.tls is not None:
            # TLS may hold decrypted packets that epoll cannot see: read them.
            sock = self.client.socket()
            if isinstance(sock, ssl.SSLSocket) and sock.pending():
                self.client.loop_read(64)
        if self._stopping or self.fatal or self.connected:
            return
        if now < self.offline_until:
            return
        if self._retry_at is not None and now >= self._retry_at:
            self._retry_at = None
            self._connect()

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, rc: mqtt.ReasonCode, props: Any
    ) -> None:
        found = reason(rc.value)
        if found.failure:
            self.counters.errors += 1
            if found.permanent:
                self._refuse(f"device login {self.client_id}", found.code)
                return
            self._schedule_retry(f"CONNACK {found}")
            return
        if self._backoff.attempt or self.first_connect.is_set():
            self.counters.reconnects += 1
        self._backoff.reset()
        self.connected = True
        if self.centre_wide:
            topics = [
                (subscription(Channel.CMD, self.centre), 1),
                (subscription(Channel.TWIN_DESIRED, self.centre), 1),
            ]
        else:
            topics = [
                t for d in self.devices.values() for t in ((d.cmd_topic, 1), (d.twin_topic, 1))
            ]
        client.subscribe(topics)
        now = self.now_ms()
        for device in self.devices.values():
            self._publish(device.topics[Channel.STATE], device.birth(now), 1, True)
        self.first_connect.set()

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, rc: mqtt.ReasonCode, props: Any
    ) -> None:
        self.connected = False
        if flags.is_disconnect_packet_from_server and reason(rc.value).permanent:
            self._refuse(f"device connection {self.client_id}", rc.value)
        if not self._stopping and not self.fatal:
            self._schedule_retry(f"disconnected: {reason(rc.value)}")

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        codes: list[mqtt.ReasonCode],
        props: Any,
    ) -> None:
        refused = [code.value for code in codes if code.value >= 0x80]
        if refused:
            self._refuse(f"subscriptions of {self.client_id}", refused[0], subscription=True)
            client.disconnect()

    def _on_publish(
        self, client: mqtt.Client, userdata: Any, mid: int, rc: mqtt.ReasonCode, props: Any
    ) -> None:
        if not delivered(rc.value):
            self.counters.undelivered += 1
        with self._count_lock:
            self._done += 1
            room = self._sent - self._done < self.max_outstanding // 2
        if room and not self._room.is_set():
            self._room.set()

    # --- commands (network thread: decode, then hand over) -------------------------------------
    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            where = Topic.parse(msg.topic)
            device = self.devices.get(where.device)
            if device is None:
                return  # another device of the centre that is not simulated here
            message = decode(where.channel, bytes(msg.payload))
        except (TopicError, DecodeError) as exc:
            self.counters.bad_commands += 1
            log.warning(
                "event=bad_command centre=%s topic=%s reason=%r payload=%r",
                self.centre,
                msg.topic[:120],
                str(exc)[:200],
                msg.payload[:120],
            )
            return
        deadline: float | None = None
        expiry = getattr(msg.properties, "MessageExpiryInterval", None) if msg.properties else None
        if expiry is not None:
            deadline = time.time() + float(expiry)
        if isinstance(message, Command):
            self.counters.commands += 1
        self.on_command(device, message, deadline)

    # --- publishing (any thread) ---------------------------------------------------------------
    def _publish(self, topic_: str, payload: bytes, qos: int, retain: bool) -> mqtt.MQTTErrorCode:
        info = self.client.publish(topic_, payload, qos, retain)
        rc = info.rc
        if rc == _RC_QUEUE or (rc == _RC_NO_CONN and qos == 0):
            return rc
        with self._count_lock:
            self._sent += 1
            full = self._sent - self._done >= self.max_outstanding
        if full:
            self._room.clear()
        return mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS

    def send(self, topic_: str, payload: bytes, qos: int, retain: bool) -> None:
        """For commands' acks, events and births: best effort, counted when refused."""
        if self._publish(topic_, payload, qos, retain) != mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS:
            self.counters.dropped += 1

    def send_reading(self, topic_: str, payload: bytes, qos: int) -> bool:
        """Publish a reading; False (and nothing sent) when this link's buffer is full."""
        return self._publish(topic_, payload, qos, False) == mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS

    def wait_room(self, stop: threading.Event, timeout: float = 1.0) -> bool:
        """Backpressure: wait until the broker has acknowledged enough of what is in flight."""
        if self._room.is_set():
            return True
        self._room.wait(timeout)
        return self._room.is_set() and not stop.is_set()

    @property
    def messages(self) -> int:
        """Every publish this link accepted (readings, births, acks, duplicates)."""
        return self._sent

    @property
    def completed(self) -> int:
        """Publishes acknowledged (QoS 1) or written (QoS 0)."""
        return self._done

    @property
    def outstanding(self) -> int:
        """Publishes not yet acknowledged (QoS 1) or written (QoS 0); never negative."""
        with self._count_lock:
            return self._sent - self._done

    # --- faults and shutdown --------------------------------------------------------------------
    def cut(self, offline_s: float) -> None:
        """Drop the TCP connection abruptly (no DISCONNECT: the broker fires the Last Will)."""

        def do() -> None:
            self.counters.cuts += 1
            self.offline_until = time.monotonic() + offline_s
            self._retry_at = self.offline_until
            sock = self.client.socket()
            if isinstance(sock, socket.socket):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

        self.loop.call_soon(do)

    def restart(self, offline_s: float = 0.3) -> None:
        """A device reboot: the connection drops (no DISCONNECT) and comes back with a new birth.

        Returns once the connection is down, so what the device publishes next
        is queued and goes out after the reconnect (after the birth or with it).
        """
        down = threading.Event()

        def do() -> None:
            self.offline_until = time.monotonic() + offline_s
            self._retry_at = self.offline_until
            sock = self.client.socket()
            if isinstance(sock, socket.socket):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                self.client.loop_read()  # paho sees the close now: on_disconnect, connected=False
            down.set()

        self.loop.call_soon(do)
        down.wait(5.0)

    def stop(self) -> None:
        """Mark every device offline (retained), then disconnect cleanly (no Will)."""
        done = threading.Event()

        def do() -> None:
            self._stopping = True
            if self.connected:
                for device in self.devices.values():
                    self.client.publish(device.topics[Channel.STATE], device.will(), 1, True)
                self.client.disconnect()
            done.set()

        self.loop.call_soon(do)
        done.wait(5.0)
