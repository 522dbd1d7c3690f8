"""MQTT helpers of the API tests: does a publish arrive, is a connection dropped."""

from __future__ import annotations

import threading

import paho.mqtt.client as mqtt

from gramlink.services import MosquittoService
from tests.factories import Received, admin_client, close, connect_client, unique_id, wait_for


class Watcher:
    """An admin subscriber on ``gl/#`` of one broker."""

    def __init__(self, broker: MosquittoService) -> None:
        self.received = Received()
        self.client = admin_client(broker)
        self.client.on_message = self.received.on_message
        done = threading.Event()
        self.client.on_subscribe = lambda *a: done.set()
        self.client.subscribe("gl/#", qos=1)
        assert done.wait(5), "admin subscription not acknowledged"

    def topics(self) -> list[str]:
        with self.received.lock:
            return [m.topic for m in self.received.messages]

    def close(self) -> None:
        close(self.client)


def publishes(
    broker: MosquittoService,
    username: str,
    password: str,
    attempts: list[str],
    marker: str,
    watcher: Watcher,
) -> set[str]:
    """Publish QoS 1 on each topic of ``attempts`` then on ``marker``; return the topics
    that reached the admin watcher. The broker handles one connection's packets in
    order, so once the marker arrived anything allowed before it has arrived too."""
    client, rc = connect_client(broker, username=username, password=password)
    assert rc is not None and not rc.is_failure, f"connect refused: {rc}"
    try:
        for topic in [*attempts, marker]:
            client.publish(topic, b'{"probe": true}', qos=1).wait_for_publish(5)
        wait_for(lambda: marker in watcher.topics(), 10, f"marker {marker}")
    finally:
        close(client)
    return set(attempts) & set(watcher.topics())


def refused(broker: MosquittoService, username: str | None, password: str | None) -> bool:
    client, rc = connect_client(broker, username=username, password=password)
    client.loop_stop()
    return rc is not None and rc.is_failure


class Connection:
    """A device's connection that records when the broker drops it."""

    def __init__(self, broker: MosquittoService, username: str, password: str) -> None:
        self.dropped = threading.Event()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=unique_id("dev"), protocol=mqtt.MQTTv5
        )
        self.client.username_pw_set(username, password)
        self.client.on_disconnect = lambda *a: self.dropped.set()
        connected = threading.Event()
        self.client.on_connect = lambda c, u, f, rc, p: None if rc.is_failure else connected.set()
        self.client.connect(broker.bind, broker.port, keepalive=30)
        self.client.loop_start()
        assert connected.wait(5), "device could not connect"

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
