"""The real brokers and database the stack runs: authentication and a round trip."""

from __future__ import annotations

import json

import httpx
import paho.mqtt.client as mqtt

from api.broker import BrokerAccess
from api.dynsec import DynsecClient
from gramlink.services import InfluxService, MosquittoService
from mqttlink.endpoint import Endpoint, TlsFiles
from tests.conftest import BrokerFactory
from tests.factories import Received, admin_client, close, connect_client, unique_id, wait_for


def test_authenticated_client_publishes_and_another_receives(mosquitto: MosquittoService) -> None:
    topic = f"gl/v1/{unique_id('c')}/dev-1/telemetry"
    received = Received()
    subscriber = admin_client(mosquitto)
    subscriber.on_message = received.on_message
    subscribed: list[int] = []
    subscriber.on_subscribe = lambda c, u, mid, rcs, props: subscribed.append(mid)
    subscriber.subscribe(topic, qos=1)
    wait_for(lambda: bool(subscribed), what="SUBACK")
    publisher = admin_client(mosquitto)
    publisher.publish(topic, b'{"hello":1}', qos=1).wait_for_publish(5)
    wait_for(lambda: received.payloads() == [b'{"hello":1}'], what="delivery")
    close(publisher)
    close(subscriber)


def test_anonymous_connect_is_refused(mosquitto: MosquittoService) -> None:
    client, rc = connect_client(mosquitto)
    assert rc is not None and rc.is_failure
    assert rc.value in (0x86, 0x87)  # bad user name or password / not authorized
    client.loop_stop()


def test_wrong_password_is_refused(mosquitto: MosquittoService) -> None:
    client, rc = connect_client(mosquitto, username="admin", password="not-the-password")
    assert rc is not None and rc.is_failure
    client.loop_stop()


def test_v311_client_connects_too(mosquitto: MosquittoService) -> None:
    client, rc = connect_client(
        mosquitto,
        username=mosquitto.admin_user,
        password=mosquitto.admin_password,
        protocol=mqtt.MQTTv311,
    )
    assert rc is not None and not rc.is_failure
    close(client)


def test_point_written_is_read_back_with_influxql(influx: InfluxService) -> None:
    device = unique_id("dev")
    line = f"router,centre=c1,device={device},model=x cpu_pct=12.5,seq=7i 1700000000000000000"
    response = httpx.post(
        f"{influx.url}/write",
        params={"db": influx.database, "u": influx.admin_user, "p": influx.admin_password},
        content=line,
    )
    assert response.status_code == 204
    body = influx.query(
        f"SELECT cpu_pct, seq FROM router WHERE device = '{device}'", database=influx.database
    )
    series = body["results"][0]["series"][0]
    assert series["values"] == [[1700000000000000000, 12.5, 7]]


def test_influx_refuses_writes_without_credentials(influx: InfluxService) -> None:
    response = httpx.post(f"{influx.url}/write", params={"db": influx.database}, content="m v=1")
    assert response.status_code == 401


def test_an_older_home_that_allowed_every_delivery_is_fixed_at_start(
    broker_factory: BrokerFactory,
) -> None:
    broker = broker_factory()
    broker.stop()
    config = json.loads(broker.dynsec_file.read_text())
    config["defaultACLAccess"]["publishClientReceive"] = True  # Mosquitto's own default
    broker.dynsec_file.write_text(json.dumps(config))
    broker.start()
    access = BrokerAccess(
        Endpoint.parse(broker.url), broker.admin_user, broker.admin_password, TlsFiles()
    )
    dynsec = DynsecClient(access)
    dynsec.start()
    acls = [
        {"acltype": "subscribePattern", "topic": "#", "allow": True},
        {"acltype": "publishClientReceive", "topic": "gl/v1/open/#", "allow": True},
    ]
    dynsec.execute(
        [
            {"command": "createRole", "rolename": "listener", "acls": acls},
            {
                "command": "createClient",
                "username": "listener",
                "password": "listener-password",
                "roles": [{"rolename": "listener"}],
            },
        ]
    )
    dynsec.close()
    listener, rc = connect_client(broker, username="listener", password="listener-password")
    assert rc is not None and not rc.is_failure
    received = Received()
    listener.on_message = received.on_message
    subscribed: list[int] = []
    listener.on_subscribe = lambda c, u, mid, rcs, props: subscribed.append(mid)
    listener.subscribe("gl/#", qos=1)
    wait_for(lambda: bool(subscribed), what="SUBACK")
    publisher = admin_client(broker)
    for topic in ("gl/v1/closed/d-1/telemetry", "gl/v1/open/d-1/telemetry"):
        publisher.publish(topic, b"{}", qos=1).wait_for_publish(5)
    wait_for(lambda: len(received.messages) >= 1, what="the allowed delivery")
    assert [m.topic for m in received.messages] == ["gl/v1/open/d-1/telemetry"]
    close(publisher)
    close(listener)
