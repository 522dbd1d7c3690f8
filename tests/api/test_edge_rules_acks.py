"""The gateways' answers to their downlink, as an operator sees them in the API.

A real API (TestClient) on the session's central broker with its login files, a
gateway provisioned through the API and run in-process with the credentials and
centre key the API gave it, on the session's centre broker. The API follows the
gateways' ``rules/ack`` and ``dynsec/ack`` on its device link and shows, on
``GET /v1/gateways/{id}`` and ``GET /v1/centres/{id}/edge-rules``, which update each
gateway holds.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from api.db.models import Device, GatewayDownlink
from api.device_link import DeviceLink
from api.services import gateway_downlink
from api.services.gateway_downlink import Downlink
from contract.edge import EdgeRulesAck, rules_ack_topic, rules_topic
from contract.provisioning import centre_key, dynsec_ack_topic, encode_key
from gateway.app import Gateway
from gramlink.services import MosquittoService
from tests.api.conftest import Api
from tests.api.test_edge_rules import spo2_rule
from tests.factories import admin_client, close, unique_id, wait_for
from tests.gateway.conftest import GatewayFactory, local_broker, make_gateway  # noqa: F401

pytestmark = pytest.mark.timeout(120)


class Centre:
    """A centre with a gateway provisioned through the API."""

    def __init__(self, api: Api) -> None:
        self.api = api
        self.id = api.centre()
        self.gateway = unique_id("gw")
        body = {"id": self.gateway, "centre_id": self.id, "model": "pi4"}
        answer = api.client.post("/v1/gateways", json=body, headers=api.headers())
        assert answer.status_code == 201, answer.text
        self.credentials = answer.json()["credentials"]

    def run(
        self,
        make: GatewayFactory,
        local: MosquittoService,
        data_dir: Path,
        key: str | None = None,
    ) -> Gateway:
        """The centre's gateway, with its own central login and (by default) its centre key."""
        return make(
            self.id,
            local,
            self.api.broker,
            gateway_id=self.gateway,
            uplink_username=self.credentials["username"],
            uplink_password=self.credentials["password"],
            centre_key=key or self.credentials["centre_key"],
            data_dir=data_dir,
            session_expiry_s=600,
        )

    def get(self, path: str) -> dict[str, Any]:
        answer = self.api.client.get(path, headers=self.api.headers())
        assert answer.status_code == 200, answer.text
        result: dict[str, Any] = answer.json()
        return result

    def downlink(self) -> dict[str, Any]:
        found: dict[str, Any] = self.get(f"/v1/gateways/{self.gateway}")["downlink"]
        return found

    def status(self, channel: str) -> str:
        return str(self.downlink()[channel]["status"])

    def rule(self) -> str:
        answer = self.api.client.post(
            "/v1/alert-rules", json=spo2_rule(self.id), headers=self.api.headers()
        )
        assert answer.status_code == 201, answer.text
        return str(answer.json()["id"])


def sessions(api: Api) -> sessionmaker[Session]:
    found: sessionmaker[Session] = api.client.app.state.components.sessions  # type: ignore[attr-defined]
    return found


def device_link(api: Api) -> DeviceLink:
    link: DeviceLink = api.client.app.state.components.devices  # type: ignore[attr-defined]
    return link


def test_a_rule_change_reaches_the_gateway_and_the_api_shows_it_applied_then_behind_offline(
    api: Api,
    local_broker: MosquittoService,  # noqa: F811
    make_gateway: GatewayFactory,  # noqa: F811
    tmp_path: Path,
) -> None:
    centre = Centre(api)
    assert centre.status("rules") == "none"
    gw = centre.run(make_gateway, local_broker, tmp_path / "gw")
    # coming online, the gateway is sent its centre's set (empty so far) and answers
    wait_for(lambda: centre.status("rules") == "applied", 15, "the first set acknowledged")

    rule = centre.rule()
    wait_for(lambda: [r.id for r in gw.edge_rules.rules] == [rule], 10, "the rule at the gateway")
    wait_for(lambda: centre.downlink()["rules"]["rules"] == 1, 10, "the new set acknowledged")
    rules = centre.downlink()["rules"]
    assert rules["status"] == "applied" and rules["error"] is None
    assert rules["acknowledged_seq"] == rules["sent_seq"] == gw.edge_rules.seq
    view = centre.get(f"/v1/centres/{centre.id}/edge-rules")
    assert view["rules"] == [{"id": rule, "version": 1}]
    (held,) = view["gateways"]
    assert held["gateway_id"] == centre.gateway and held["rules"]["status"] == "applied"

    # a device provisioned now: its credentials reach the gateway, which says so
    answer = api.post_device(centre.id, unique_id("oxi"), "pulse_oximeter")
    assert answer.status_code == 201, answer.text
    wait_for(lambda: centre.status("credentials") == "applied", 10, "credentials acknowledged")

    gw.stop()  # the gateway is off: what is sent now waits for it
    wait_for(lambda: centre.get(f"/v1/gateways/{centre.gateway}")["online"] is False, 10, "offline")
    disabled = api.client.post(f"/v1/alert-rules/{rule}/disable", headers=api.headers())
    assert disabled.status_code == 200, disabled.text
    behind = centre.downlink()["rules"]
    assert behind["status"] == "behind"
    assert behind["sent_seq"] > behind["acknowledged_seq"] == rules["acknowledged_seq"]
    assert behind["rules"] == 1  # what the gateway still holds
    (held,) = centre.get(f"/v1/centres/{centre.id}/edge-rules")["gateways"]
    assert held["rules"]["status"] == "behind"
    assert centre.get(f"/v1/centres/{centre.id}/edge-rules")["rules"] == []

    again = centre.run(make_gateway, local_broker, tmp_path / "gw")
    wait_for(lambda: centre.status("rules") == "applied", 15, "the set caught up")
    assert again.edge_rules.rules == []
    assert centre.downlink()["rules"]["rules"] == 0


def test_a_gateway_with_another_centre_key_rejects_credentials_and_the_api_shows_why(
    api: Api,
    local_broker: MosquittoService,  # noqa: F811
    make_gateway: GatewayFactory,  # noqa: F811
    tmp_path: Path,
) -> None:
    centre = Centre(api)
    wrong = encode_key(centre_key(secrets.token_bytes(32), centre.id, 1))  # not the API's key
    centre.run(make_gateway, local_broker, tmp_path / "gw", key=wrong)
    wait_for(lambda: centre.status("rules") == "applied", 15, "the gateway online")
    device = unique_id("oxi")
    assert api.post_device(centre.id, device, "pulse_oximeter").status_code == 201
    wait_for(lambda: centre.status("credentials") == "rejected", 10, "the refusal")
    credentials = centre.downlink()["credentials"]
    assert credentials["error_device"] == device
    assert credentials["error"].startswith("dynsec_key_outdated")
    assert "GRAMLINK_GATEWAY_CENTRE_KEY" in credentials["error"]
    assert credentials["acknowledged_seq"] == credentials["sent_seq"] == credentials["error_seq"]


def test_a_rule_set_the_gateway_cannot_read_shows_rejected_with_its_error(
    api: Api,
    local_broker: MosquittoService,  # noqa: F811
    make_gateway: GatewayFactory,  # noqa: F811
    tmp_path: Path,
) -> None:
    centre = Centre(api)
    gw = centre.run(make_gateway, local_broker, tmp_path / "gw")
    wait_for(lambda: centre.status("rules") == "applied", 15, "the gateway online")
    held = centre.downlink()["rules"]["acknowledged_seq"]
    # a newer API's set (schema version 2), numbered and recorded as the API sends one
    with sessions(api).begin() as session:
        row = session.get(Device, centre.gateway)
        assert row is not None
        row.dynsec_seq += 1
        seq = row.dynsec_seq
        gateway_downlink.sent(session, row, Downlink.RULES)
    publisher = admin_client(api.broker)
    try:
        payload = json.dumps({"v": 2, "seq": seq, "rules": []}).encode()
        publisher.publish(rules_topic(centre.id, centre.gateway), payload, qos=1).wait_for_publish(
            5
        )
        wait_for(lambda: centre.status("rules") == "rejected", 10, "the refusal")
    finally:
        close(publisher)
    rules = centre.downlink()["rules"]
    assert rules["error_seq"] == seq == rules["sent_seq"]
    assert "v" in rules["error"] and rules["error_at"] is not None
    assert rules["acknowledged_seq"] == held  # it keeps the set it had
    assert gw.edge_rules.seq == held


def test_old_unknown_and_malformed_acks_are_counted_and_change_nothing(
    api: Api,
    local_broker: MosquittoService,  # noqa: F811
    make_gateway: GatewayFactory,  # noqa: F811
    tmp_path: Path,
) -> None:
    centre = Centre(api)
    centre.run(make_gateway, local_broker, tmp_path / "gw")
    wait_for(lambda: centre.status("rules") == "applied", 15, "the gateway online")
    centre.rule()
    wait_for(lambda: centre.downlink()["rules"]["rules"] == 1, 10, "the rule acknowledged")
    before = centre.downlink()
    link = device_link(api)
    stale, unknown, invalid = link.stale, link.unknown, link.invalid
    old = EdgeRulesAck(seq=before["rules"]["acknowledged_seq"] - 1, ok=False, error="old")
    stranger, answer = unique_id("gw"), EdgeRulesAck(seq=1, ok=True, rules=0)
    publisher = admin_client(api.broker)
    try:
        for topic, payload in (
            (rules_ack_topic(centre.id, centre.gateway), old.model_dump_json().encode()),
            (rules_ack_topic(centre.id, stranger), answer.model_dump_json().encode()),
            (rules_ack_topic(centre.id, centre.gateway), b'{"v": 1, "seq": "x"}'),
            (dynsec_ack_topic(centre.id, centre.gateway), b"not json"),
        ):
            publisher.publish(topic, payload, qos=1).wait_for_publish(5)
        wait_for(
            lambda: (
                (link.stale, link.unknown, link.invalid) == (stale + 1, unknown + 1, invalid + 2)
            ),
            10,
            "every ack counted",
        )
    finally:
        close(publisher)
    after = centre.downlink()
    assert after["rules"] == before["rules"]
    assert after["credentials"] == before["credentials"]
    assert after["stale_acks"] == before["stale_acks"] + 1
    with sessions(api)() as session:
        assert session.get(GatewayDownlink, stranger) is None
