"""One MQTT v5 connection with a reconnect policy we own.

A :class:`MqttLink` runs paho's network loop on its own thread (``mqtt-<name>``),
connects with a fixed client id, ``clean_start=False`` and a session expiry (so
the broker keeps our subscriptions and queued messages across drops), and after
a drop waits a jittered, capped, exponential delay (:class:`Backoff`) before the
next attempt. The delay resets only after a connection stayed up for
``STABLE_S`` seconds, so a broker that accepts and drops at once cannot cause a
tight loop. A refusal for bad credentials or authorisation is permanent: the
link stops and reports ``refused`` (the application exits loudly).

Callbacks given to the link run on its network thread and must not block
(hand off to a queue). paho errors are mapped to :mod:`gateway.errors` here.
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from contract.backoff import Backoff
from gateway.settings import Endpoint
from runtime.logs import kv

log = logging.getLogger(__name__)

STABLE_S = 10.0
# CONNACK reason codes that retrying cannot fix.
_PERMANENT = {
    "Bad user name or password",
    "Not authorized",
    "Client identifier not valid",
    "Banned",
    "Bad authentication method",
}

OnConnect = Callable[[mqtt.Client, Properties | None], None]
OnMessage = Callable[[mqtt.MQTTMessage, int], None]
OnPublish = Callable[[int, bool], None]


@dataclass
class Will:
    topic: str
    payload: bytes
    delay_s: int
    retain: bool = True


@dataclass
class LinkOptions:
    name: str
    endpoint: Endpoint
    client_id: str
    username: str | None = None
    password: str | None = None
    keepalive_s: int = 30
    session_expiry_s: int = 7 * 24 * 3600
    manual_ack: bool = False
    receive_maximum: int | None = None  # announced in CONNECT: broker -> us unacked messages
    will: Will | None = None
    ca_file: Path | None = None  # trust this CA (PEM) instead of the system's, for mqtts://
    backoff_min_s: float = 0.5
    backoff_max_s: float = 60.0
    context: dict[str, str] = field(default_factory=dict)


class MqttLink:
    """A persistent-session MQTT v5 client that reconnects by itself."""

    def __init__(
        self,
        options: LinkOptions,
        *,
        on_connect: OnConnect | None = None,
        on_message: OnMessage | None = None,
        on_publish: OnPublish | None = None,
    ) -> None:
        self.options = options
        self._on_connect_cb = on_connect
        self._on_message_cb = on_message
        self._on_publish_cb = on_publish
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=options.client_id,
            protocol=mqtt.MQTTv5,
            manual_ack=options.manual_ack,
        )
        # In-flight publishes are bounded by the callers (uplink window, downlink by the
        # central broker's in-flight limit); paho only resends what we gave it.
        self.client.max_inflight_messages_set(1000)
        self.client.max_queued_messages_set(0)
        if options.username is not None:
            self.client.username_pw_set(options.username, options.password)
        if options.endpoint.tls:
            ca_file = str(options.ca_file) if options.ca_file is not None else None
            self.client.tls_set_context(ssl.create_default_context(cafile=ca_file))
        if options.will is not None:
            props = Properties(PacketTypes.WILLMESSAGE)
            props.WillDelayInterval = options.will.delay_s
            self.client.will_set(
                options.will.topic, options.will.payload, 1, options.will.retain, props
            )
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_publish = self._on_publish
        self.backoff = Backoff(options.backoff_min_s, options.backoff_max_s)
        self.connected = threading.Event()
        self.generation = 0  # +1 per successful CONNACK: stale message ids are never acked
        self.receive_maximum = 65535
        self.down_since: float | None = time.monotonic()
        self.refused: str | None = None
        self._up_since = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"mqtt-{options.name}", daemon=True)
        self._reported_failure = False

    # -- lifecycle (caller's thread) -------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def disconnect(self, timeout: float = 3.0) -> None:
        """A clean DISCONNECT (the broker discards the Last Will), then stop."""
        if self.connected.is_set():
            self.client.disconnect()
            deadline = time.monotonic() + timeout
            while self.connected.is_set() and time.monotonic() < deadline:
                time.sleep(0.02)
        self.stop()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def down_for(self) -> float:
        since = self.down_since
        return 0.0 if since is None else time.monotonic() - since

    def publish(
        self,
        topic: str,
        payload: bytes,
        *,
        retain: bool = False,
        properties: Properties | None = None,
    ) -> mqtt.MQTTMessageInfo:
        """QoS 1 publish; paho keeps it and resends it after a reconnect until PUBACK."""
        return self.client.publish(topic, payload, qos=1, retain=retain, properties=properties)

    def ack(self, mid: int, generation: int) -> None:
        """PUBACK a received message, unless it came on an earlier connection."""
        if generation == self.generation and self.connected.is_set():
            self.client.ack(mid, 1)

    # -- network thread ------------------------------------------------------------------
    def _run(self) -> None:
        first = True
        ctx = self.options.context
        while not self._stop.is_set():
            try:
                if first:
                    props = Properties(PacketTypes.CONNECT)
                    props.SessionExpiryInterval = self.options.session_expiry_s
                    if self.options.receive_maximum is not None:
                        props.ReceiveMaximum = self.options.receive_maximum
                    self.client.connect(
                        self.options.endpoint.host,
                        self.options.endpoint.port,
                        keepalive=self.options.keepalive_s,
                        clean_start=False,
                        properties=props,
                    )
                    first = False
                else:
                    self.client.reconnect()
                self._reported_failure = False
            except (OSError, ssl.SSLError) as exc:
                self._report_failure(str(exc))
                self._wait_backoff()
                continue
            while not self._stop.is_set() and self.refused is None:
                rc = self.client.loop(timeout=0.05)
                if rc != mqtt.MQTT_ERR_SUCCESS:
                    break
            if self.refused is not None:
                log.error(kv("link_refused", link=self.options.name, reason=self.refused, **ctx))
                return
            if self._stop.is_set():
                return
            self._mark_down()
            self._wait_backoff()

    def _wait_backoff(self) -> None:
        if self._up_since and time.monotonic() - self._up_since > STABLE_S:
            self.backoff.reset()
        self._up_since = 0.0
        self._stop.wait(self.backoff.next())

    def _report_failure(self, detail: str) -> None:
        if not self._reported_failure:
            log.warning(
                kv(
                    "link_connect_failed",
                    link=self.options.name,
                    url=self.options.endpoint,
                    detail=detail[:200],
                    **self.options.context,
                )
            )
            self._reported_failure = True

    def _mark_down(self) -> None:
        if self.connected.is_set():
            self.connected.clear()
            self.down_since = time.monotonic()
            log.warning(kv("link_down", link=self.options.name, **self.options.context))

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.ConnectFlags,
        reason: mqtt.ReasonCode,
        props: Properties | None,
    ) -> None:
        if reason.is_failure:
            if str(reason) in _PERMANENT:
                self.refused = str(reason)
            else:
                self._report_failure(f"CONNACK {reason}")
            return
        self.receive_maximum = int(getattr(props, "ReceiveMaximum", 65535) or 65535)
        self.generation += 1
        self._up_since = time.monotonic()
        was_down = self.down_for()
        self.down_since = None
        self.connected.set()
        log.info(
            kv(
                "link_up",
                link=self.options.name,
                url=self.options.endpoint,
                session_present=flags.session_present,
                down_s=f"{was_down:.1f}",
                **self.options.context,
            )
        )
        if self._on_connect_cb is not None:
            self._on_connect_cb(client, props)

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.DisconnectFlags,
        reason: mqtt.ReasonCode,
        props: Properties | None,
    ) -> None:
        self._mark_down()

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        if self._on_message_cb is not None:
            self._on_message_cb(msg, self.generation)

    def _on_publish(
        self,
        client: mqtt.Client,
        userdata: object,
        mid: int,
        reason: mqtt.ReasonCode,
        props: Properties | None,
    ) -> None:
        if self._on_publish_cb is not None:
            self._on_publish_cb(mid, not reason.is_failure)
