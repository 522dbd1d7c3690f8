"""Local enforcement: credential updates from the API, applied to the centre's broker.

The API publishes a ``DynsecUpdate`` per credential change on
``gl/v1/{centre}/{gateway}/_gateway/dynsec`` (QoS 1). The gateway subscribes to
it on its persistent central session (a :class:`gateway.downlink.Downlink`
route), so updates queued while it was offline arrive when it reconnects.

Threads and hand-off:

- ``on_message`` runs on the central link's network thread: it only puts the
  message on a bounded queue (``dynsec_queue`` items). When the queue is full
  the message is **not** acknowledged (counted, logged): the central broker
  still holds it and sends it again after the next reconnect. The gateway
  announces the same number as its MQTT Receive Maximum, so the central broker
  never has more unacknowledged messages out to it than the queue holds: the
  full case is a safety net, not a path taken in normal operation.
- The ``dynsec`` thread applies the messages one at a time, in arrival order
  (the central broker delivers one session's QoS 1 messages in order), with
  :meth:`gateway.local_auth.LocalAuth.apply` over the gateway's own admin
  connection to the local broker, then acknowledges the central message
  (paho ``manual_ack``) and publishes a ``DynsecAck`` on ``.../dynsec/ack``.
- ``on_local_connect`` runs on the local admin link's thread after every
  connect: it subscribes to the plugin's responses again (``resubscribe``).

Outcomes of one message:

- applied (or skipped as older than the newest one of its device): acked;
- ``BadUpdate`` / ``LocalBrokerRefused`` (permanent): counted, logged and
  quarantined with its reason (``dynsec_bad_update``, ``dynsec_key_outdated``
  for an update made with a centre key this gateway does not hold, or
  ``dynsec_refused``),
  then acked, so it never blocks the next update. An update whose handling
  raised an exception nobody expected (a bug) likewise, as ``internal_error``
  (a store failure still stops the worker: that is the disk, not the update).
  The excerpt kept has the
  values of unknown fields redacted (a malformed update must not bring a secret
  to disk);
- ``LocalBrokerTimeout`` (retryable: the local broker is down or slow, or the
  account lacks dynsec admin rights, which the plugin answers with silence):
  retried with jittered backoff (subscribing to the answers again first, so
  rights granted meanwhile take effect without a restart), never acked
  meanwhile; the next updates wait behind it, so each device's updates stay in
  order.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass

import paho.mqtt.client as mqtt
from paho.mqtt.properties import Properties

from contract.admission import Refusal, internal_error_detail
from contract.provisioning import DynsecAck, dynsec_ack_topic
from contract.topics import ID_RE
from gateway.errors import StoreError
from gateway.local_auth import (
    BadUpdate,
    KeyOutdated,
    LocalAuth,
    LocalBrokerRefused,
    LocalBrokerTimeout,
)
from gateway.outbox import now_ms
from gateway.quarantine import Quarantine, Rejected
from mqttlink.paho_link import MqttLink
from runtime.backoff import Backoff
from runtime.logs import kv

log = logging.getLogger(__name__)

REASON_BAD = "dynsec_bad_update"
REASON_KEY = "dynsec_key_outdated"
REASON_REFUSED = "dynsec_refused"
# Fields of a DynsecUpdate; anything else in a quarantined update is redacted.
_KNOWN_FIELDS = frozenset(
    {
        "v",
        "op",
        "device_id",
        "kind",
        "credential_version",
        "seq",
        "key_id",
        "model",
        "provisioned_ms",
    }
)


@dataclass(frozen=True, slots=True)
class _Update:
    topic: str
    payload: bytes
    mid: int
    generation: int


@dataclass
class DynsecCounters:
    received: int = 0
    applied: int = 0
    quarantined: int = 0
    overflow: int = 0  # not taken (queue full), left unacknowledged for redelivery
    retries: int = 0  # local broker timeouts retried


class DynsecWorker:
    """Takes updates off the central link and applies them to the local broker."""

    def __init__(
        self,
        auth: LocalAuth,
        *,
        local: MqttLink,
        central: MqttLink,
        quarantine: Quarantine,
        centre: str,
        gateway_id: str,
        queue_size: int,
        backoff: Callable[[], Backoff],
    ) -> None:
        self.auth = auth
        self.local = local
        self.central = central
        self.quarantine = quarantine
        self.ctx = {"centre": centre, "gw": gateway_id}
        self.ack_topic = dynsec_ack_topic(centre, gateway_id)
        self.counters = DynsecCounters()
        self.queue: queue.Queue[_Update] = queue.Queue(maxsize=queue_size)
        self._new_backoff = backoff
        self._ready_generation = -1
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="dynsec", daemon=True)
        self.failure: BaseException | None = None

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop; an update not yet applied stays unacknowledged (the broker keeps it)."""
        self._stop.set()
        self.auth.cancel()
        if self._thread.is_alive():
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    # -- network threads ---------------------------------------------------------------------
    def on_message(self, msg: mqtt.MQTTMessage, generation: int) -> None:
        """Central link thread: hand off, never block; when full, leave it unacknowledged."""
        self.counters.received += 1
        try:
            self.queue.put_nowait(_Update(msg.topic, bytes(msg.payload), msg.mid, generation))
        except queue.Full:
            self.counters.overflow += 1
            log.warning(
                kv(
                    "dynsec_queue_full",
                    action="not_acked_redelivered_after_reconnect",
                    overflow_total=self.counters.overflow,
                    **self.ctx,
                )
            )

    def on_local_connect(self, client: mqtt.Client, props: Properties | None) -> None:
        """Local admin link thread, after every connect: the plugin's responses again."""
        self.auth.resubscribe()
        self._ready_generation = self.local.generation

    def _ready(self) -> bool:
        # Subscribed on this very connection: our commands cannot overtake the SUBSCRIBE.
        return self.local.connected.is_set() and self._ready_generation == self.local.generation

    # -- dynsec thread -----------------------------------------------------------------------
    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    update = self.queue.get(timeout=0.25)
                except queue.Empty:
                    continue
                self._handle(update)
        except BaseException as exc:  # the outermost loop: the app sees it and exits
            self.failure = exc
            log.exception(kv("dynsec_worker_failed", error=type(exc).__name__, **self.ctx))

    def _handle(self, update: _Update) -> None:
        backoff = self._new_backoff()
        while not self._stop.is_set():
            if not self._ready():
                self._stop.wait(0.05)
                continue
            try:
                ack = self.auth.apply(update.payload)
            except KeyOutdated as exc:
                self._set_aside(update, REASON_KEY, str(exc))
                return
            except BadUpdate as exc:
                self._set_aside(update, REASON_BAD, str(exc))
                return
            except LocalBrokerRefused as exc:
                self._set_aside(update, REASON_REFUSED, str(exc))
                return
            except LocalBrokerTimeout as exc:
                if self._stop.is_set():
                    return
                self.counters.retries += 1
                delay = backoff.next()
                fields: dict[str, object] = {"error": exc, "attempt": backoff.attempt}
                if backoff.attempt == 3:
                    fields["hint"] = "is the local account a dynsec admin?"
                log.warning(kv("dynsec_retry", **fields, retry_in_s=f"{delay:.1f}", **self.ctx))
                self._stop.wait(delay)
                # Subscribe to the answers again: a SUBSCRIBE refused before the account
                # got its admin rights is not retried by the broker (queued before the
                # next command on this connection, so it cannot be overtaken).
                if self._ready():
                    self.auth.resubscribe()
                continue
            except StoreError:
                raise  # the gateway's disk, not this update: the worker stops
            except Exception as exc:  # one poison update: set it aside, never stop the worker
                log.exception(kv("dynsec_internal_error", error=type(exc).__name__, **self.ctx))
                self._set_aside(update, Refusal.INTERNAL_ERROR.value, internal_error_detail(exc))
                return
            if backoff.attempt:
                log.info(kv("dynsec_resumed", attempts=backoff.attempt + 1, **self.ctx))
            self.counters.applied += 1
            self._done(update, ack)
            return

    def _set_aside(self, update: _Update, reason: str, detail: str) -> None:
        self.counters.quarantined += 1
        self.quarantine.add(
            [Rejected(now_ms(), reason, update.topic, detail, _redacted(update.payload))]
        )
        log.warning(
            kv(
                "quarantined",
                reason=reason,
                detail=detail[:200],
                size=len(update.payload),
                quarantined_total=self.quarantine.total,
                **self.ctx,
            )
        )
        self._done(update, _refusal(update.payload, reason, detail))

    def _done(self, update: _Update, ack: DynsecAck | None) -> None:
        self.central.ack(update.mid, update.generation)
        if ack is not None:
            self.central.publish(self.ack_topic, ack.model_dump_json().encode())


def _fields(payload: bytes) -> dict[str, object] | None:
    try:
        value = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        return None
    return value if isinstance(value, dict) else None


def _redacted(payload: bytes) -> bytes:
    """What the quarantine keeps: known fields as sent, the values of others redacted."""
    fields = _fields(payload)
    if fields is None:
        return b""  # not a JSON object: only its size (in the log) is kept
    safe = {k: (v if k in _KNOWN_FIELDS else "<redacted>") for k, v in fields.items()}
    return json.dumps(safe, default=str)[:512].encode()


def _refusal(payload: bytes, reason: str, detail: str) -> DynsecAck | None:
    """A negative ack for the API, when the update names its device and seq."""
    fields = _fields(payload) or {}
    seq, device = fields.get("seq"), fields.get("device_id")
    if type(seq) is not int or not isinstance(device, str) or not ID_RE.fullmatch(device):
        return None
    if not 0 <= seq <= 2**53:
        return None
    return DynsecAck(seq=seq, device_id=device, ok=False, error=f"{reason}: {detail}"[:256])
