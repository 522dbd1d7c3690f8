"""Clinical alerts raised at the centre (issue #13, item 1), with real brokers.

A centre broker and a central one (its own, so the uplink can be cut), the
gateway as the gateway tests run it, the alert engine on the central broker, a
real ``gammu-smsd`` on Gammu's dummy modem, and the API's edge-rule downlink
(:mod:`api.services.edge_rules`) published by a dynsec admin client as the API's.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from api.broker import BrokerAccess
from api.db.models import AlertRule, Centre
from api.dynsec import DynsecClient
from api.presence import Presence
from api.services import edge_rules
from api.services.alert_rules import spec_of
from contract.codec import encode
from contract.edge import local_alert_filter
from contract.messages import telemetry
from contract.metrics import PulseOximeterMetrics
from gateway.app import Gateway
from gramlink.services import InfluxService, MosquittoService
from mqttlink.endpoint import Endpoint, TlsFiles
from tests.alerts.conftest import Publisher, Registry, Running, engine_settings
from tests.factories import Received, admin_client, close, wait_for
from tests.gateway.conftest import GatewayFactory, local_broker, make_gateway  # noqa: F401
from tests.gateway.sim import Devices
from tests.gateway.sms import SmsDaemon
from tests.gateway.test_priority_lane import oximeter

pytestmark = pytest.mark.timeout(120)
NUMBER = "+911234567890"
BrokerFactory = Callable[..., MosquittoService]


class Tablet:
    """A centre tablet following the local alert topic."""

    def __init__(self, broker: MosquittoService, centre: str) -> None:
        self.received = Received()
        self.client = admin_client(broker)
        self.client.on_message = self.received.on_message
        self.client.subscribe(local_alert_filter(centre), qos=1)

    def alerts(self) -> list[dict]:
        return [json.loads(p) for p in self.received.payloads() if p]

    def close(self) -> None:
        close(self.client)


@pytest.fixture
def sms(tmp_path: Path) -> Iterator[SmsDaemon]:
    daemon = SmsDaemon(tmp_path / "sms")
    yield daemon
    daemon.close()


@pytest.fixture
def central(broker_factory: BrokerFactory) -> MosquittoService:
    """A central broker of this test's own: stopping it cuts the centre's uplink."""
    return broker_factory()


@pytest.fixture
def api_downlink(central: MosquittoService) -> Iterator[DynsecClient]:
    """The API's admin connection (what publishes credential and rule updates)."""
    access = BrokerAccess(
        Endpoint.parse(central.url), central.admin_user, central.admin_password, TlsFiles(), 5
    )
    client = DynsecClient(access)
    client.start()
    yield client
    client.close()


def oximeter_at(spo2: float, seq: int) -> bytes:
    metrics = PulseOximeterMetrics(spo2_pct=spo2, pulse_bpm=80.0)
    return encode(telemetry("pulse_oximeter", ts=int(time.time() * 1000), seq=seq, metrics=metrics))


def clinical_centre(registry: Registry, below: float = 90) -> tuple[str, str, str]:
    """A centre with a gateway, an SpO2 rule scoped to it and a channel: (centre, gw, rule)."""
    centre = registry.centre()
    gateway = registry.device(centre, "gateway", "gw")
    rule = registry.rule(
        "spo2-low", centre, any=[{"metric": "spo2_pct", "op": "<", "value": below}]
    )
    registry.channel()
    return centre, gateway, rule


def push(registry: Registry, dynsec: DynsecClient, centre: str) -> None:
    with registry.sessions.begin() as session:
        row = session.get(Centre, centre)
        assert row is not None
        assert edge_rules.push(session, dynsec, [row])


def edge_gateway(
    make_gateway: GatewayFactory,  # noqa: F811
    centre: str,
    gateway: str,
    local: MosquittoService,
    central: MosquittoService,
    data_dir: Path,
    **extra: object,
) -> Gateway:
    return make_gateway(
        centre, local, central, gateway_id=gateway, data_dir=data_dir, session_expiry_s=600, **extra
    )


def test_an_spo2_of_85_with_the_uplink_cut_is_announced_at_the_centre_and_once_centrally(
    registry: Registry,
    central: MosquittoService,
    local_broker: MosquittoService,  # noqa: F811
    influx: InfluxService,
    api_downlink: DynsecClient,
    make_gateway: GatewayFactory,  # noqa: F811
    sms: SmsDaemon,
    tmp_path: Path,
) -> None:
    centre, gateway, rule = clinical_centre(registry)
    hook = tmp_path / "hook.json"
    gw = edge_gateway(
        make_gateway,
        centre,
        gateway,
        local_broker,
        central,
        tmp_path / "gw",
        alert_command=f"sh -c 'cat > {hook}'",
        alert_sms_numbers=NUMBER,
        alert_sms_config=sms.config,
    )
    publisher = Publisher(central)
    engine = Running(engine_settings(central, influx, registry), registry)
    tablet = Tablet(local_broker, centre)
    devices = Devices(local_broker, centre)
    try:
        engine.subscribed(publisher)
        wait_for(gw.central.connected.is_set, 10, "the gateway's uplink")
        push(registry, api_downlink, centre)
        wait_for(lambda: [r.id for r in gw.edge_rules.rules] == [rule], 10, "the edge rules")

        central.stop()  # the uplink goes down
        wait_for(lambda: not gw.central.connected.is_set(), 10, "the uplink down")
        sent = time.monotonic()
        devices.publish("oxi-1", "telemetry", oximeter(1))
        wait_for(lambda: tablet.alerts() != [], 2, "the alert on the local topic")
        wait_for(lambda: any(NUMBER in m for m in sms.sent()), 2 - (time.monotonic() - sent), "SMS")
        local_alert = tablet.alerts()[0]
        assert local_alert["state"] == "firing" and local_alert["clinical"] is True
        assert local_alert["value"] == 85.0 and local_alert["device"] == "oxi-1"
        assert "SpO2 below 90%" in sms.sent()[0] and sms.failed() == []
        wait_for(hook.exists, 5, "the command hook")
        wait_for(lambda: hook.read_text() != "", 5, "the hook's stdin")
        assert json.loads(hook.read_text())["alert_id"] == local_alert["alert_id"]

        # a tablet that connects later still sees it: the topic is retained
        late = Tablet(local_broker, centre)
        try:
            wait_for(lambda: late.alerts() != [], 5, "the retained alert")
        finally:
            late.close()

        central.start()  # the uplink is back
        wait_for(lambda: gw.uplink.counters.singles_sent >= 1, 20, "the edge alert upstream")
        wait_for(lambda: engine.service.engine.evaluated >= 1, 20, "the reading centrally")

        def stamped() -> bool:
            found = registry.alerts(centre)
            return len(found) == 1 and found[0].edge_raised_ms is not None

        wait_for(stamped, 20, "one alert, marked as raised at the centre")
        (alert,) = registry.alerts(centre)
        assert alert.id == local_alert["alert_id"] and alert.rule_id == rule
        assert alert.clinical and alert.state == "firing" and alert.value == 85.0
        assert alert.edge_raised_ms == local_alert["raised_ms"]
        # both the reading and the gateway's alert were seen: one alert, one notification
        assert registry.events(centre) == [(rule, "firing")]
    finally:
        devices.close()
        tablet.close()
        engine.close()
        publisher.close()


def test_rules_updated_centrally_while_a_gateway_is_offline_apply_when_it_comes_back(
    registry: Registry,
    central: MosquittoService,
    local_broker: MosquittoService,  # noqa: F811
    api_downlink: DynsecClient,
    make_gateway: GatewayFactory,  # noqa: F811
    tmp_path: Path,
) -> None:
    centre, gateway, rule = clinical_centre(registry)
    access = BrokerAccess(
        Endpoint.parse(central.url), central.admin_user, central.admin_password, TlsFiles(), 5
    )
    # the API's presence follower: a gateway that comes online gets its centre's rules
    presence = Presence(
        access,
        registry.sessions,
        interval=0.1,
        on_gateway_online=lambda s, g: edge_rules.seed_gateway(s, api_downlink, g),
    )
    presence.start()
    tablet = Tablet(local_broker, centre)
    devices = Devices(local_broker, centre)
    try:
        gw = edge_gateway(make_gateway, centre, gateway, local_broker, central, tmp_path / "gw")
        wait_for(
            lambda: [r.id for r in gw.edge_rules.rules] == [rule], 10, "rules on coming online"
        )
        first = gw.edge_rules.seq
        gw.stop()  # the gateway is off (its session on the central broker stays)

        with registry.sessions.begin() as session:
            row = session.get(AlertRule, rule)
            assert row is not None
            before = spec_of(row)
            row.spec = {
                **row.spec,
                "condition": {
                    **row.spec["condition"],
                    "any": [{"metric": "spo2_pct", "op": "<", "value": 95}],
                },
            }
            row.version += 1
            assert edge_rules.push_rule_change(session, api_downlink, before, spec_of(row))

        again = edge_gateway(make_gateway, centre, gateway, local_broker, central, tmp_path / "gw")
        wait_for(lambda: again.edge_rules.seq > first, 10, "the update queued while offline")
        (held,) = again.edge_rules.rules
        assert held.version == 2

        devices.publish("oxi-1", "telemetry", oximeter_at(93, 1))  # fine under 90, not under 95
        wait_for(lambda: tablet.alerts() != [], 5, "the alert of the updated rule")
        assert tablet.alerts()[0]["value"] == 93.0
    finally:
        devices.close()
        tablet.close()
        presence.close()


def test_a_gateway_restarted_while_offline_still_evaluates_the_rules_it_had(
    registry: Registry,
    central: MosquittoService,
    local_broker: MosquittoService,  # noqa: F811
    api_downlink: DynsecClient,
    make_gateway: GatewayFactory,  # noqa: F811
    tmp_path: Path,
) -> None:
    centre, gateway, rule = clinical_centre(registry)
    tablet = Tablet(local_broker, centre)
    devices = Devices(local_broker, centre)
    try:
        gw = edge_gateway(make_gateway, centre, gateway, local_broker, central, tmp_path / "gw")
        wait_for(gw.central.connected.is_set, 10, "the gateway's uplink")
        push(registry, api_downlink, centre)
        wait_for(lambda: [r.id for r in gw.edge_rules.rules] == [rule], 10, "the edge rules")
        central.stop()  # the uplink goes down, then the centre's power
        gw.stop()

        again = edge_gateway(make_gateway, centre, gateway, local_broker, central, tmp_path / "gw")
        assert [r.id for r in again.edge_rules.rules] == [rule]
        assert not again.central.connected.is_set()
        devices.publish("oxi-1", "telemetry", oximeter(1))
        wait_for(lambda: tablet.alerts() != [], 5, "the alert after the reboot")
        assert tablet.alerts()[0]["rule_id"] == rule
        # the reading and the alert wait for the uplink (the tablet may hear it first)
        wait_for(lambda: again.outbox.stats().depth >= 2, 10, "reading and alert stored")
    finally:
        devices.close()
        tablet.close()
        central.start()
