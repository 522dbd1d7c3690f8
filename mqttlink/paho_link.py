"""One MQTT v5 connection over paho, with a reconnect policy we own.

A :class:`MqttLink` runs paho's network loop on its own thread (``mqtt-<name>``),
connects with a fixed client id, ``clean_start=False`` and a session expiry (so
the broker keeps our subscriptions and queued messages across drops), and after
a drop waits a jittered, capped, exponential delay (:class:`Backoff`) before the
next attempt. The delay resets only after a connection stayed up for
``STABLE_S`` seconds, so a broker that accepts and drops at once cannot cause a
tight loop.

Every reason code is read by value through :mod:`mqttlink.reasons`:

- CONNACK: a permanent code (bad credentials, not authorised, client id not
  valid, banned, ...) stops the link; a transient one backs off and retries;
- DISCONNECT from the broker: a permanent code (0x8E session taken over: another
  process connected with our client id) stops the link; others reconnect.
  Mosquitto before 2.0.15 closes the older connection of a taken-over client id
  without a DISCONNECT: ``TAKEOVER_LOSSES`` such closes in a row of young
  connections stop the link as taken over too (:mod:`mqttlink.takeover`; the
  older process loses first, so the newer one wins), unless the link's
  ``guessed_takeover_stops`` is off (a gateway's rural uplink, whose network
  drops young connections by itself): then it warns, at most once a minute, and
  reconnects;
- SUBACK: a refused filter of :meth:`MqttLink.subscribe` stops the link (our
  filters are fixed, so a refusal means the account lacks the rights); a
  subscription made on ``link.client`` directly is its owner's business (the
  gateway's dynsec worker retries until an administrator grants the rights);
- PUBACK: ``on_publish(mid, code)`` gets the code's value; callers decide with
  :func:`mqttlink.reasons.delivered`.

A link that stops for good sets :attr:`MqttLink.refusal` (the one line to print
and the exit code) and logs nothing itself: its owner reports it once. A
callback that raises (a bug) ends the link too: the traceback is logged once as
``event=link_failed`` and :attr:`MqttLink.failure` names it; its owner exits
(``ExitCode.INTERNAL``) rather than run on without the connection.

TLS (``mqtts://``): the client's context is built once, in the constructor
(:func:`mqttlink.endpoint.tls_context`; a bad file raises ``TlsFileError``
naming the setting). A broker certificate that the configured CA did not sign
is logged as one error line naming the CA setting (then at most one a minute,
:class:`runtime.logs.Throttle`) and retried like any connection failure.

paho's own buffers are bounded: ``max_inflight`` unacknowledged QoS 1 publishes
and ``max_queued`` more waiting; a publish past them returns
``MQTT_ERR_QUEUE_SIZE`` to the caller, which keeps the message.

Callbacks given to the link run on its network thread and must not block
(hand off to a queue).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from mqttlink.endpoint import Endpoint, TlsFiles, is_certificate_refusal, tls_context
from mqttlink.reasons import (
    SESSION_TAKEN_OVER,
    Refusal,
    SettingNames,
    reason,
    subscription_refused,
)
from mqttlink.takeover import STABLE_S, TakeoverGuess
from runtime.backoff import Backoff
from runtime.logs import Throttle, kv

log = logging.getLogger(__name__)

TAKEOVER_LOSSES = 3
NEVER_DOWN = 0.0

OnConnect = Callable[[mqtt.Client, Properties | None], None]
OnMessage = Callable[[mqtt.MQTTMessage, int], None]
OnPublish = Callable[[int, int], None]
"""(message id, PUBACK reason code value): ``reasons.delivered(code)`` says if it arrived."""

Subscription = tuple[str, SubscribeOptions]


@dataclass(frozen=True, slots=True)
class Will:
    topic: str
    payload: bytes
    delay_s: int
    retain: bool = True


@dataclass(frozen=True)
class LinkOptions:
    """What a link needs; ``names`` are the settings a refusal line tells a person to fix."""

    name: str
    endpoint: Endpoint
    client_id: str
    names: SettingNames
    username: str | None = None
    password: str | None = None
    tls: TlsFiles = field(default_factory=TlsFiles)  # used for mqtts:// only
    keepalive_s: int = 30
    session_expiry_s: int = 7 * 24 * 3600
    clean_start: bool = False
    manual_ack: bool = False
    receive_maximum: int | None = None  # announced in CONNECT: broker -> us unacked messages
    will: Will | None = None
    max_inflight: int = 1000
    max_queued: int = 10_000
    backoff_min_s: float = 0.5
    backoff_max_s: float = 60.0
    quiet: bool = False  # start without logging connect failures (the owner reports them)
    # a takeover guessed from silent closes (not a DISCONNECT 0x8E) stops the link; False
    # on a link whose network drops young connections by itself (a rural uplink): warn only
    guessed_takeover_stops: bool = True
    context: Mapping[str, str] = field(default_factory=dict)


class MqttLink:
    """A persistent-session MQTT v5 client that reconnects by itself until refused."""

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
        self.client.max_inflight_messages_set(options.max_inflight)
        self.client.max_queued_messages_set(options.max_queued)
        if options.username is not None:
            self.client.username_pw_set(options.username, options.password)
        if options.endpoint.tls:
            self.client.tls_set_context(tls_context(options.tls))
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
        self.client.on_subscribe = self._on_subscribe
        self.backoff = Backoff(options.backoff_min_s, options.backoff_max_s)
        self.connected = threading.Event()
        self.attempted = threading.Event()  # set after the first connect attempt's outcome
        self.generation = 0  # +1 per successful CONNACK: stale message ids are never acked
        self.receive_maximum = 65535
        self.down_since: float | None = time.monotonic()
        self.refusal: Refusal | None = None
        self.failure: str | None = None  # a callback raised: the link ended (a bug)
        self.last_failure: str | None = None
        self.certificate_refused = False
        self.quiet = options.quiet  # the owner may set it back to False once it is up
        self._subscriptions: dict[int, list[str]] = {}
        self._up_since = 0.0
        self._takeover = TakeoverGuess(TAKEOVER_LOSSES)
        self._told = False  # the broker sent a DISCONNECT before this loss
        self._closing = False  # our own clean DISCONNECT: not worth a warning
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"mqtt-{options.name}", daemon=True)
        self._reported_failure = False
        self._throttle = Throttle(log)

    # -- lifecycle (caller's thread) -------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    def disconnect(self, timeout: float = 3.0) -> None:
        """A clean DISCONNECT (the broker discards the Last Will), then stop."""
        if self.connected.is_set():
            self._closing = True
            self.client.disconnect()
            deadline = time.monotonic() + timeout
            while self.connected.is_set() and time.monotonic() < deadline:
                time.sleep(0.02)
        self.stop()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    @property
    def url(self) -> str:
        return str(self.options.endpoint)

    def down_for(self) -> float:
        since = self.down_since
        return NEVER_DOWN if since is None else time.monotonic() - since

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

    def subscribe(self, subscriptions: Sequence[Subscription]) -> None:
        """Subscribe (call from ``on_connect``); a refused filter stops the link."""
        result, mid = self.client.subscribe(list(subscriptions))
        if result == mqtt.MQTT_ERR_SUCCESS and mid is not None:
            self._subscriptions[mid] = [topic for topic, _ in subscriptions]

    def ack(self, mid: int, generation: int) -> None:
        """PUBACK a received message, unless it came on an earlier connection."""
        if generation == self.generation and self.connected.is_set():
            self.client.ack(mid, 1)

    # -- network thread ------------------------------------------------------------------
    def _run(self) -> None:
        try:
            self._connect_and_loop()
        except Exception as exc:  # a callback's bug: paho lets it out of loop()
            self.failure = f"the {self.options.name} MQTT link ended: {type(exc).__name__}: {exc}"
            name, context = self.options.name, self.options.context
            log.exception(kv("link_failed", link=name, error=type(exc).__name__, **context))
            self._mark_down()
            self.attempted.set()
        finally:
            # paho closes its loop's socket pair only in __del__, and this object
            # and its client refer to each other, so without this the sockets wait
            # for a full garbage collection; a process that piles up 1024
            # descriptors that way can no longer connect (paho waits in select()).
            self.client._reset_sockets()

    def _connect_and_loop(self) -> None:
        first = True
        while not self._stop.is_set():
            try:
                if first:
                    props = Properties(PacketTypes.CONNECT)
                    props.SessionExpiryInterval = self.options.session_expiry_s
                    if self.options.receive_maximum is not None:
                        props.ReceiveMaximum = self.options.receive_maximum
                    first = False
                    self.client.connect(
                        self.options.endpoint.host,
                        self.options.endpoint.port,
                        keepalive=self.options.keepalive_s,
                        clean_start=self.options.clean_start,
                        properties=props,
                    )
                else:
                    self.client.reconnect()
            except OSError as exc:  # ssl.SSLError is an OSError too
                self._connect_failed(exc)
                self._wait_backoff()
                continue
            while not self._stop.is_set() and self.refusal is None:
                rc = self.client.loop(timeout=0.05)
                if rc != mqtt.MQTT_ERR_SUCCESS:
                    break
            if self.refusal is not None:
                self._mark_down()
                self._close_socket()
                self.attempted.set()
                return
            if self._stop.is_set():
                return
            self._mark_down()
            self.attempted.set()
            if self._taken_over():
                self._close_socket()
                return
            self._wait_backoff()

    def _taken_over(self) -> bool:
        """After a loss: True (and ``refusal`` set) when another process holds our id."""
        silent, self._told = not self._told, False
        if not self._takeover.lost(time.monotonic(), silent=silent):
            return False
        if not self.options.guessed_takeover_stops:
            self._throttle.warning(
                "link_closed_young",
                key=f"young:{self.options.name}",
                link=self.options.name,
                closes_in_a_row=self._takeover.count,
                client_id=self.options.client_id,
                hint="a flaky network, or another process with this client id",
                **self.options.context,
            )
            return False
        what = (
            f"{self.options.name} connection (closed by the broker {self._takeover.count} "
            "times in a row right after connecting)"
        )
        self._refuse(what, SESSION_TAKEN_OVER)
        return True

    def _close_socket(self) -> None:
        """After a refusal: DISCONNECT if the broker still talks to us, else just close."""
        with contextlib.suppress(OSError):
            if self.client.is_connected():
                self.client.disconnect()
                self.client.loop(timeout=0.1)
            sock = self.client.socket()
            if sock is not None:
                sock.close()

    def _wait_backoff(self) -> None:
        if self._up_since and time.monotonic() - self._up_since > STABLE_S:
            self.backoff.reset()
        self._up_since = 0.0
        self._stop.wait(self.backoff.next())

    def _connect_failed(self, exc: OSError) -> None:
        self._takeover.reset()
        detail = str(exc)[:200] or type(exc).__name__
        self.last_failure = detail
        ctx = self.options.context
        self.certificate_refused = is_certificate_refusal(exc)
        if self.quiet:
            pass
        elif self.certificate_refused:
            self._throttle.error(
                "broker_certificate_untrusted",
                link=self.options.name,
                url=self.url,
                detail=detail,
                check=self.options.tls.ca_setting,
                **ctx,
            )
        elif not self._reported_failure:
            log.warning(
                kv(
                    "link_connect_failed",
                    link=self.options.name,
                    url=self.url,
                    detail=detail,
                    **ctx,
                )
            )
            self._reported_failure = True
        self.attempted.set()

    def _refuse(self, what: str, code: int, *, subscription: bool = False) -> None:
        found = subscription_refused(code) if subscription else reason(code)
        self.refusal = Refusal.of(what, found, self.url, self.options.names)

    def _mark_down(self) -> None:
        if self.connected.is_set():
            self.connected.clear()
            self.down_since = time.monotonic()
            level = logging.INFO if self._closing else logging.WARNING
            log.log(level, kv("link_down", link=self.options.name, **self.options.context))

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.ConnectFlags,
        code: mqtt.ReasonCode,
        props: Properties | None,
    ) -> None:
        found = reason(code.value)
        if found.failure:
            self._takeover.reset()
            self.last_failure = f"CONNACK {found}"
            if found.permanent:
                self._refuse(f"{self.options.name} login", found.code)
            elif not self._reported_failure and not self.quiet:
                log.warning(
                    kv(
                        "link_connect_failed",
                        link=self.options.name,
                        url=self.url,
                        detail=self.last_failure,
                        **self.options.context,
                    )
                )
                self._reported_failure = True
            self.attempted.set()
            return
        self._reported_failure = False
        self.certificate_refused = False
        self.last_failure = None
        self.receive_maximum = int(getattr(props, "ReceiveMaximum", 65535) or 65535)
        self.generation += 1
        self._up_since = time.monotonic()
        self._takeover.up(self._up_since)
        was_down = self.down_for()
        self.down_since = None
        self._subscriptions.clear()
        log.info(
            kv(
                "link_up",
                link=self.options.name,
                url=self.url,
                session_present=flags.session_present,
                down_s=f"{was_down:.1f}",
                **self.options.context,
            )
        )
        if self._on_connect_cb is not None:
            self._on_connect_cb(client, props)  # subscriptions go out before anyone publishes
        self.connected.set()
        self.attempted.set()

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.DisconnectFlags,
        code: mqtt.ReasonCode,
        props: Properties | None,
    ) -> None:
        if flags.is_disconnect_packet_from_server:
            self._told = True
            found = reason(code.value)
            if found.permanent:
                self._refuse(f"{self.options.name} connection", found.code)
            elif found.failure:
                self.last_failure = f"DISCONNECT {found}"
        self._mark_down()

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: object,
        mid: int,
        codes: list[mqtt.ReasonCode],
        props: Properties | None,
    ) -> None:
        filters = self._subscriptions.pop(mid, None)
        if filters is None:
            return  # made on ``client`` directly: its owner reads the SUBACK
        for index, code in enumerate(codes):
            if code.value >= 0x80:
                topic = filters[index] if index < len(filters) else filters[0]
                self._refuse(
                    f"{self.options.name} subscription to {topic}", code.value, subscription=True
                )
                return

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        if self._on_message_cb is not None:
            self._on_message_cb(msg, self.generation)

    def _on_publish(
        self,
        client: mqtt.Client,
        userdata: object,
        mid: int,
        code: mqtt.ReasonCode,
        props: Properties | None,
    ) -> None:
        if self._on_publish_cb is not None:
            self._on_publish_cb(mid, code.value)
