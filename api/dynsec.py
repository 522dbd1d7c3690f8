"""A client of Mosquitto's dynamic-security plugin over ``$CONTROL/dynamic-security/v1``.

Commands go out in lists (one message may carry hundreds), each with its own
``correlationData``; the plugin answers on ``.../response`` and we match every
answer to its command. A list that is not fully answered within the timeout
raises :class:`DynsecTimeout`.

Errors (all :class:`DynsecError`):
- ``DynsecTimeout`` (retryable): no or partial answer in time, or not connected;
- ``DynsecRefused`` (permanent): the plugin answered a command with an error
  other than the "already exists" answers of an idempotent repeat.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Iterable
from typing import Any

import paho.mqtt.client as mqtt

from contract.provisioning import CONTROL_RESPONSE_TOPIC, CONTROL_TOPIC, TOLERATED_ERRORS

log = logging.getLogger(__name__)


class DynsecError(RuntimeError):
    pass


class DynsecTimeout(DynsecError):
    pass


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
    """Owns one paho connection with the broker's dynsec admin account.

    Besides control commands it publishes downlink messages (QoS 1) to gateways.
    ``_on_*`` methods run on paho's network thread; callers block in ``execute``.
    """

    def __init__(
        self,
        host: str,
        port: int,
        username: str,
        password: str,
        *,
        timeout: float = 10.0,
        batch: int = 500,
        client_id: str | None = None,
    ) -> None:
        self.host, self.port, self.timeout, self.batch = host, port, timeout, batch
        self._client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id or f"gl-api-dynsec-{uuid.uuid4().hex[:8]}",
            protocol=mqtt.MQTTv5,
        )
        self._client.username_pw_set(username, password)
        self._client.max_inflight_messages_set(100)
        self._client.on_connect = self._on_connect
        self._client.on_message = self._on_message
        # paho annotates ints, but the delays are plain seconds and sub-second ones work.
        self._client.reconnect_delay_set(0.2, 10)  # type: ignore[arg-type]
        self._lock = threading.Lock()
        self._pending: dict[str, _Pending] = {}
        self._subscribed = threading.Event()
        self._client.on_subscribe = lambda *a: self._subscribed.set()

    def start(self) -> None:
        self._client.connect_async(self.host, self.port, keepalive=30)
        self._client.loop_start()
        if not self._subscribed.wait(self.timeout):
            raise DynsecTimeout(f"no dynsec admin session with {self.host}:{self.port}")

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def connected(self) -> bool:
        return self._client.is_connected()

    def _on_connect(self, client: mqtt.Client, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        if rc.is_failure:
            log.error("event=dynsec_connect_failed reason=%s", rc)
            return
        client.subscribe(CONTROL_RESPONSE_TOPIC, qos=1)

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
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
            info = self._client.publish(CONTROL_TOPIC, json.dumps({"commands": tagged}), qos=1)
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                raise DynsecTimeout(f"broker not connected ({mqtt.error_string(info.rc)})")
            deadline = self.timeout + len(tagged) * 0.01
            if not pending.done.wait(deadline):
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

    def publish(self, topic: str, payload: bytes, *, qos: int = 1) -> None:
        """Publish (not retained) and wait for the broker's PUBACK."""
        info = self._client.publish(topic, payload, qos=qos, retain=False)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise DynsecTimeout(f"broker not connected ({mqtt.error_string(info.rc)})")
        started = time.monotonic()
        info.wait_for_publish(self.timeout)
        if not info.is_published():
            raise DynsecTimeout(f"no PUBACK for {topic} after {time.monotonic() - started:.1f} s")

    def publish_many(self, messages: list[tuple[str, bytes]], *, qos: int = 1) -> None:
        """Publish all (not retained), then wait for every PUBACK."""
        infos = []
        for topic, payload in messages:
            info = self._client.publish(topic, payload, qos=qos, retain=False)
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                raise DynsecTimeout(f"broker not connected ({mqtt.error_string(info.rc)})")
            infos.append(info)
        deadline = time.monotonic() + self.timeout + len(infos) * 0.002
        for info in infos:
            info.wait_for_publish(max(0.0, deadline - time.monotonic()))
            if not info.is_published():
                raise DynsecTimeout(f"{len(infos)} downlink messages not all acknowledged")
