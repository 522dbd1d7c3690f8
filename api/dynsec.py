"""A client of Mosquitto's dynamic-security plugin over ``$CONTROL/dynamic-security/v1``.

Commands go out in lists (one message may carry hundreds), each with its own
``correlationData``; the plugin answers on ``.../response`` and we match every
answer to its command. A list that is not fully answered within the timeout
raises :class:`DynsecTimeout`.

The connection is a :class:`mqttlink.paho_link.MqttLink` (TLS, reconnects and
reason codes as every GramLink client); :meth:`DynsecClient.start` waits for it
and raises :class:`api.broker.BrokerStartError` (one line, an exit code) when the
broker is down, its certificate untrusted or the admin login refused.

Errors (all :class:`DynsecError`):
- ``DynsecTimeout`` (retryable): no or partial answer in time, or not connected;
- ``DynsecRefused`` (permanent): the plugin answered a command with an error
  other than the "already exists" answers of an idempotent repeat;
- ``DownlinkRefused`` (permanent): the broker answered a downlink publish with an
  error code (e.g. 0x87 not authorized). A PUBACK 0x10 (no matching subscribers:
  the gateway never subscribed) is not delivered either; it is counted in
  ``undelivered_total`` and logged, not raised: the gateway gets its centre's
  credentials again when it comes online (``Provisioner.seed_gateway``).
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from api.broker import BrokerAccess, wait_up
from contract.provisioning import CONTROL_RESPONSE_TOPIC, CONTROL_TOPIC, TOLERATED_ERRORS
from mqttlink.paho_link import MqttLink
from mqttlink.reasons import NO_MATCHING_SUBSCRIBERS, delivered, reason
from runtime.logs import Throttle

log = logging.getLogger(__name__)


class DynsecError(RuntimeError):
    pass


class DynsecTimeout(DynsecError):
    pass


class DownlinkRefused(DynsecError):
    def __init__(self, topic: str, code: int) -> None:
        super().__init__(f"the broker refused a downlink message to {topic}: {reason(code)}")
        self.code = code


class DynsecRefused(DynsecError):
    def __init__(self, command: str, error: str, subject: str) -> None:
        super().__init__(f"{command} {subject}: {error}")
        self.command = command
        self.error = error
        self.subject = subject


class _Pending:
    def __init__(self, ids: Iterable[str]) -> None:
        self.waiting = set(ids)
        self.answers: dict[str, dict[str, Any]] = {}
        self.done = threading.Event()


class DynsecClient:
    """Owns one connection with the broker's dynsec admin account.

    Besides control commands it publishes downlink messages (QoS 1) to gateways.
    ``_on_*`` methods run on the link's network thread; callers block in ``execute``.
    """

    def __init__(
        self,
        access: BrokerAccess,
        *,
        batch: int = 500,
        client_id: str | None = None,
    ) -> None:
        self.access, self.timeout, self.batch = access, access.timeout_s, batch
        options = access.link_options(
            "api-dynsec", client_id or f"gl-api-dynsec-{uuid.uuid4().hex[:8]}"
        )
        self._link = MqttLink(
            replace(options, quiet=True),
            on_connect=self._on_connect,
            on_message=self._on_message,
            on_publish=self._on_publish,
        )
        self._lock = threading.Lock()
        self._pending: dict[str, _Pending] = {}
        self._pubacks: dict[int, int] = {}  # mid -> a not-delivered PUBACK code, until read
        self.undelivered_total = 0
        self._throttle = Throttle(log)  # one line a minute, with the count left out

    def start(self) -> None:
        """Connect; raises ``BrokerStartError`` (one line, exit code) if that fails."""
        self._link.start()
        try:
            wait_up(self._link, self.timeout)
        except BaseException:
            self._link.stop()
            raise
        self._link.quiet = False

    def close(self) -> None:
        self._link.disconnect()

    def connected(self) -> bool:
        return self._link.connected.is_set()

    @property
    def link(self) -> MqttLink:
        return self._link

    def _on_connect(self, client: mqtt.Client, props: Properties | None) -> None:
        self._link.subscribe([(CONTROL_RESPONSE_TOPIC, SubscribeOptions(qos=1))])

    def _on_publish(self, mid: int, code: int) -> None:
        if delivered(code):
            return  # the usual case: no entry means delivered
        with self._lock:
            self._pubacks[mid] = code
            if len(self._pubacks) > 10_000:  # codes nobody read (bounded)
                self._pubacks.pop(next(iter(self._pubacks)))

    def _on_message(self, msg: mqtt.MQTTMessage, generation: int) -> None:
        if msg.topic != CONTROL_RESPONSE_TOPIC:
            return
        try:
            responses = json.loads(msg.payload)["responses"]
        except (ValueError, KeyError, TypeError):
            log.warning("event=dynsec_bad_response payload=%r", msg.payload[:200])
            return
        with self._lock:
            for answer in responses:
                key = answer.get("correlationData") if isinstance(answer, dict) else None
                if not isinstance(key, str):
                    continue
                pending = self._pending.pop(key, None)
                if pending is None:
                    continue
                pending.answers[key] = answer
                pending.waiting.discard(key)
                if not pending.waiting:
                    pending.done.set()

    def execute(
        self,
        commands: list[dict[str, Any]],
        tolerate: frozenset[tuple[str, str]] = TOLERATED_ERRORS,
    ) -> list[dict[str, Any]]:
        """Run commands in order, ``batch`` per message; raise on the first refusal.

        Returns the plugin's answer to each command, in order.
        """
        answers: list[dict[str, Any]] = []
        for start in range(0, len(commands), self.batch):
            answers += self._execute_chunk(commands[start : start + self.batch], tolerate)
        return answers

    def _execute_chunk(
        self, commands: list[dict[str, Any]], tolerate: frozenset[tuple[str, str]]
    ) -> list[dict[str, Any]]:
        tagged = []
        for command in commands:
            tagged.append({**command, "correlationData": uuid.uuid4().hex})
        pending = _Pending(c["correlationData"] for c in tagged)
        with self._lock:
            for c in tagged:
                self._pending[c["correlationData"]] = pending
        try:
            self._check_link()
            info = self._link.client.publish(CONTROL_TOPIC, json.dumps({"commands": tagged}), qos=1)
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                raise DynsecTimeout(f"broker not connected ({mqtt.error_string(info.rc)})")
            deadline = self.timeout + len(tagged) * 0.01
            done = pending.done.wait(deadline)
            self._take_code(info.mid)  # the plugin's answer, not the PUBACK, says what happened
            if not done:
                raise DynsecTimeout(
                    f"{len(pending.waiting)} of {len(tagged)} dynsec commands unanswered "
                    f"after {deadline:.1f} s"
                )
        finally:
            with self._lock:
                for c in tagged:
                    self._pending.pop(c["correlationData"], None)
        for c in tagged:
            answer = pending.answers[c["correlationData"]]
            error = answer.get("error")
            if error and (c["command"], error) not in tolerate:
                subject = c.get("username") or c.get("rolename") or ""
                raise DynsecRefused(c["command"], str(error), str(subject))
        return [pending.answers[c["correlationData"]] for c in tagged]

    def _check_link(self) -> None:
        refusal = self._link.refusal
        if refusal is not None:
            raise DynsecTimeout(refusal.line)
        if self._link.failure is not None:
            raise DynsecTimeout(self._link.failure)

    def _take_code(self, mid: int) -> int | None:
        with self._lock:
            return self._pubacks.pop(mid, None)

    def publish(self, topic: str, payload: bytes, *, qos: int = 1) -> None:
        """Publish (not retained) and wait for the broker's PUBACK."""
        self.publish_many([(topic, payload)], qos=qos)

    def publish_many(self, messages: list[tuple[str, bytes]], *, qos: int = 1) -> None:
        """Publish all (not retained), then wait for every PUBACK and read its code.

        Raises ``DynsecTimeout`` when not every PUBACK came in time and
        ``DownlinkRefused`` for an error code; 0x10 is counted and logged.
        """
        self._check_link()
        sent = []
        for topic, payload in messages:
            info = self._link.client.publish(topic, payload, qos=qos, retain=False)
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                raise DynsecTimeout(f"broker not connected ({mqtt.error_string(info.rc)})")
            sent.append((topic, info))
        deadline = time.monotonic() + self.timeout + len(sent) * 0.002
        codes = []
        for topic, info in sent:
            info.wait_for_publish(max(0.0, deadline - time.monotonic()))
            if not info.is_published():
                raise DynsecTimeout(f"{len(sent)} downlink messages not all acknowledged")
            code = self._take_code(info.mid)
            codes.append((topic, 0 if code is None else code))
        for topic, code in codes:
            if delivered(code):
                continue
            if code != NO_MATCHING_SUBSCRIBERS:
                raise DownlinkRefused(topic, code)
            self.undelivered_total += 1
            self._throttle.warning(
                "downlink_not_delivered",
                topic=topic,
                reason=reason(code),
                undelivered_total=self.undelivered_total,
            )
