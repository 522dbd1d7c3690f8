"""Factories shared by tests: MQTT clients, unique ids, waiting without sleeping."""

from __future__ import annotations

import itertools
import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import paho.mqtt.client as mqtt

from gramlink.services import MosquittoService

_counter = itertools.count()


def unique_id(prefix: str = "t") -> str:
    """A contract-valid id, unique in this test session."""
    return f"{prefix}-{next(_counter)}-{uuid.uuid4().hex[:6]}"


def wait_for(check: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


@dataclass
class Received:
    """Messages a test client got, in arrival order."""

    messages: list[mqtt.MQTTMessage] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.messages.append(msg)

    def payloads(self) -> list[bytes]:
        with self.lock:
            return [m.payload for m in self.messages]


def connect_client(
    broker: MosquittoService,
    *,
    username: str | None = None,
    password: str | None = None,
    client_id: str | None = None,
    protocol: mqtt.MQTTProtocolVersion = mqtt.MQTTv5,
    timeout: float = 5.0,
) -> tuple[mqtt.Client, mqtt.ReasonCode | None]:
    """Connect and run a paho client; returns it with the CONNACK reason code."""
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=client_id or unique_id("client"),
        protocol=protocol,
    )
    if username is not None:
        client.username_pw_set(username, password)
    outcome: list[mqtt.ReasonCode] = []
    client.on_connect = lambda c, u, flags, rc, props: outcome.append(rc)
    client.connect(broker.bind, broker.port, keepalive=30)
    client.loop_start()
    try:
        wait_for(lambda: bool(outcome), timeout, "CONNACK")
    except AssertionError:
        client.loop_stop()
        return client, None
    return client, outcome[0]


def admin_client(broker: MosquittoService, **kwargs: object) -> mqtt.Client:
    client, rc = connect_client(
        broker,
        username=broker.admin_user,
        password=broker.admin_password,
        **kwargs,  # type: ignore[arg-type]
    )
    assert rc is not None and not rc.is_failure, f"admin connect failed: {rc}"
    return client


def close(client: mqtt.Client) -> None:
    client.disconnect()
    client.loop_stop()


def dynsec_admin(broker: MosquittoService, commands: list[dict[str, object]]) -> None:
    """Run dynsec commands as the broker's admin and wait for every answer to be a success."""
    client = admin_client(broker)
    answers = Received()
    client.on_message = answers.on_message
    subscribed = threading.Event()
    client.on_subscribe = lambda *a: subscribed.set()
    client.subscribe("$CONTROL/dynamic-security/v1/response", qos=1)
    assert subscribed.wait(5)
    client.publish("$CONTROL/dynamic-security/v1", json.dumps({"commands": commands}), qos=1)
    wait_for(lambda: bool(answers.messages), 5, "dynsec answer")
    responses = json.loads(answers.payloads()[0])["responses"]
    assert all("error" not in r for r in responses), responses
    close(client)
