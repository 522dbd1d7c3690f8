"""A long-lived process opens and closes many MQTT clients (the API checks each
reloaded login file with a fresh one; services restart their links). paho waits
on its sockets with select(), which cannot watch a descriptor numbered 1024 or
more: a process that keeps a finished client's sockets open stops connecting at
all after a few hundred clients. So a finished client holds no socket, without
waiting for the garbage collector."""

from __future__ import annotations

import gc
import os
import time
from collections.abc import Iterator

import pytest

from api.broker_files import login_accepted
from gramlink.services import MosquittoService
from mqttlink.endpoint import Endpoint
from mqttlink.paho_link import LinkOptions, MqttLink
from mqttlink.reasons import SettingNames
from tests.factories import unique_id, wait_for

NAMES = SettingNames("X_URL", "X_USER", "X_PASSWORD")
ROUNDS = 20


def open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.fixture
def no_garbage_collector() -> Iterator[None]:
    """Reference cycles are collected only now and then; do not count on it."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


@pytest.mark.usefixtures("no_garbage_collector")
def test_links_stopped_with_or_without_a_disconnect_keep_no_socket(
    mosquitto: MosquittoService,
) -> None:
    before = open_descriptors()
    for round_ in range(ROUNDS):
        link = MqttLink(
            LinkOptions(
                name="test",
                endpoint=Endpoint.parse(mosquitto.url),
                client_id=unique_id("fd"),
                names=NAMES,
                username=mosquitto.admin_user,
                password=mosquitto.admin_password,
            )
        )
        link.start()
        wait_for(link.connected.is_set, 10, "link up")
        if round_ % 2:
            link.disconnect()
        else:
            link.stop()
        wait_for(lambda link=link: not link.alive, 10, "link stopped")  # type: ignore[misc]
    assert open_descriptors() <= before + 1


@pytest.mark.usefixtures("no_garbage_collector")
def test_checking_a_login_many_times_keeps_no_socket(mosquitto: MosquittoService) -> None:
    endpoint = Endpoint.parse(mosquitto.url)
    before = open_descriptors()
    for _ in range(ROUNDS):
        deadline = time.monotonic() + 5
        assert login_accepted(endpoint, mosquitto.admin_user, mosquitto.admin_password, deadline)
        assert not login_accepted(endpoint, mosquitto.admin_user, "wrong", deadline)
    assert open_descriptors() <= before + 1


@pytest.mark.usefixtures("no_garbage_collector")
def test_asking_whether_the_broker_answers_keeps_no_socket(mosquitto: MosquittoService) -> None:
    before = open_descriptors()
    for _ in range(ROUNDS):
        assert mosquitto.answers()
    assert open_descriptors() <= before + 1
