"""The shared paho link against a real Mosquitto: refusals stop it with the right
exit code and line, transient failures retry, PUBACK codes reach the caller by value."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from paho.mqtt.subscribeoptions import SubscribeOptions

from gramlink.services import MosquittoService
from gramlink.services.process import free_port
from mqttlink.endpoint import Endpoint
from mqttlink.paho_link import LinkOptions, MqttLink
from mqttlink.reasons import NO_MATCHING_SUBSCRIBERS, SettingNames, delivered
from runtime.exits import ExitCode
from tests.conftest import BrokerFactory
from tests.factories import dynsec_admin, unique_id, wait_for

NAMES = SettingNames("X_URL", "X_USER", "X_PASSWORD", client_id="X_CLIENT_ID", ca_file="X_CA")
LinkFactory = Callable[..., MqttLink]


@pytest.fixture
def make_link(mosquitto: MosquittoService) -> Iterator[LinkFactory]:
    links: list[MqttLink] = []

    def make(url: str | None = None, **extra: Any) -> MqttLink:
        values: dict[str, Any] = {
            "name": "test",
            "endpoint": Endpoint.parse(url or mosquitto.url),
            "client_id": unique_id("link"),
            "names": NAMES,
            "username": mosquitto.admin_user,
            "password": mosquitto.admin_password,
            "backoff_min_s": 0.05,
            "backoff_max_s": 0.2,
        }
        names = ("on_connect", "on_message", "on_publish")
        callbacks = {k: extra.pop(k) for k in names if k in extra}
        values.update(extra)
        link = MqttLink(LinkOptions(**values), **callbacks)
        link.start()
        links.append(link)
        return link

    yield make
    for link in links:
        link.disconnect()


def test_a_refused_login_stops_the_link_with_exit_4_and_names_the_credentials(
    make_link: LinkFactory,
) -> None:
    link = make_link(password="wrong-" + secrets.token_hex(4))
    wait_for(lambda: not link.alive, 10, "link stopped")
    assert link.refusal is not None
    assert link.refusal.exit_code is ExitCode.REFUSED
    assert "refused us: 0x8" in link.refusal.line
    assert link.refusal.line.endswith("check X_USER / X_PASSWORD")


def test_another_process_with_our_client_id_takes_the_session_and_we_exit_5(
    make_link: LinkFactory,
) -> None:
    client_id = unique_id("twin")
    first = make_link(client_id=client_id)
    wait_for(first.connected.is_set, 10, "first up")
    second = make_link(client_id=client_id)
    wait_for(lambda: not first.alive, 10, "first stopped")
    assert first.refusal is not None
    assert first.refusal.exit_code is ExitCode.SESSION_TAKEN_OVER
    assert "another process connected with the same client id" in first.refusal.line
    assert first.refusal.line.endswith("check X_CLIENT_ID")
    wait_for(second.connected.is_set, 10, "second up")
    assert second.refusal is None and second.alive  # the newer one wins


def test_a_link_told_not_to_guess_takeovers_warns_and_keeps_reconnecting(
    make_link: LinkFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """A gateway's uplink: connections closed young (here by a twin, on a rural link
    by the network) warn and reconnect; a gateway stopped on a guess would stay dark."""
    client_id = unique_id("twin")
    first = make_link(client_id=client_id, guessed_takeover_stops=False)
    wait_for(first.connected.is_set, 10, "first up")
    second = make_link(client_id=client_id, guessed_takeover_stops=False)
    wait_for(
        lambda: any("event=link_closed_young" in r.getMessage() for r in caplog.records),
        20,
        "the warning",
    )
    assert first.alive and second.alive
    assert first.refusal is None and second.refusal is None
    lines = [r.getMessage() for r in caplog.records if "link_closed_young" in r.getMessage()]
    assert len(lines) <= 2  # at most one a minute from each link
    assert all(f"client_id={client_id}" in line for line in lines)


def test_a_refused_subscription_stops_the_link_naming_the_filter(
    make_link: LinkFactory, broker_factory: BrokerFactory
) -> None:
    broker = broker_factory()  # dynsec only: its roles decide subscriptions
    user, password = unique_id("norights"), secrets.token_urlsafe(12)
    dynsec_admin(broker, [{"command": "createClient", "username": user, "password": password}])
    link: MqttLink | None = None
    made = threading.Event()  # the link may connect before make_link has returned it

    def on_connect(client: object, props: object) -> None:
        made.wait(10)
        assert link is not None
        link.subscribe([("gl/v1/+/+/state", SubscribeOptions(qos=1))])

    link = make_link(broker.url, username=user, password=password, on_connect=on_connect)
    made.set()
    wait_for(lambda: not link.alive, 10, "link stopped")
    assert link.refusal is not None
    assert link.refusal.exit_code is ExitCode.REFUSED
    assert "subscription to gl/v1/+/+/state" in link.refusal.line
    assert "lacks the rights (0x87 not authorized)" in link.refusal.line


def test_a_broker_that_is_down_is_retried_not_refused(make_link: LinkFactory) -> None:
    link = make_link(url=f"mqtt://127.0.0.1:{free_port()}")
    wait_for(lambda: link.backoff.attempt >= 3, 10, "retries")
    assert link.alive and link.refusal is None
    assert link.down_for() > 0 and link.last_failure


def test_puback_codes_reach_the_caller_by_value(make_link: LinkFactory) -> None:
    codes: dict[int, int] = {}
    done = threading.Event()

    def on_publish(mid: int, code: int) -> None:
        codes[mid] = code
        done.set()

    link = make_link(on_publish=on_publish)
    wait_for(link.connected.is_set, 10, "up")
    # A channel no consumer subscribes to (ingest's persistent sessions of earlier
    # tests still match every telemetry topic).
    info = link.publish(f"gl/v1/{unique_id('c')}/nobody/unread/{unique_id('t')}", b"{}")
    assert done.wait(5)
    assert codes[info.mid] == NO_MATCHING_SUBSCRIBERS
    assert not delivered(codes[info.mid])


def test_a_callback_that_raises_ends_the_link_loudly_not_silently(
    make_link: LinkFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """A bug in an owner's callback: the link ends and says so (its owner then exits
    with 1), instead of a dead thread behind a process that looks alive."""
    topic = f"gl/v1/{unique_id('c')}/d/unread/{unique_id('t')}"
    link: MqttLink | None = None
    made = threading.Event()

    def on_connect(client: object, props: object) -> None:
        made.wait(10)
        assert link is not None
        link.subscribe([(topic, SubscribeOptions(qos=1))])

    def on_message(msg: object, generation: int) -> None:
        raise KeyError("a bug in the owner")

    link = make_link(on_connect=on_connect, on_message=on_message)
    made.set()
    wait_for(link.connected.is_set, 10, "up")
    sender = make_link()
    wait_for(sender.connected.is_set, 10, "sender up")
    sender.publish(topic, b"{}")
    wait_for(lambda: not link.alive, 10, "link ended")
    assert link.failure == "the test MQTT link ended: KeyError: 'a bug in the owner'"
    assert link.refusal is None and not link.connected.is_set()
    failed = [r for r in caplog.records if "event=link_failed" in r.getMessage()]
    assert len(failed) == 1 and failed[0].exc_info is not None
