"""The API sends each centre's gateway the rules it evaluates itself, on every rule change."""

from __future__ import annotations

import json
from typing import Any

from alerting.defaults import DEFAULT_PACK
from contract.edge import rules_topic
from tests.api.conftest import Api
from tests.api.mqtt_helpers import Watcher
from tests.factories import unique_id, wait_for


def spo2_rule(centre: str) -> dict[str, Any]:
    spec = DEFAULT_PACK["spo2-low"].model_dump(mode="json", by_alias=True)
    return {**spec, "scope": {"kind": "centre", "value": centre}}


def test_a_clinical_rule_change_reaches_the_gateways_of_the_centres_it_applies_to(api: Api) -> None:
    centre, other = api.centre(), api.centre()
    gw1, gw2 = unique_id("gw"), unique_id("gw")
    for at, gateway in ((centre, gw1), (other, gw2)):
        body = {"id": gateway, "centre_id": at, "model": "pi4"}
        answer = api.client.post("/v1/gateways", json=body, headers=api.headers())
        assert answer.status_code == 201, answer.text
    watcher = Watcher(api.broker)
    try:
        mine, theirs = rules_topic(centre, gw1), rules_topic(other, gw2)

        def sets(topic: str) -> list[dict[str, Any]]:
            with watcher.received.lock:
                return [
                    json.loads(m.payload) for m in watcher.received.messages if m.topic == topic
                ]

        created = api.client.post("/v1/alert-rules", json=spo2_rule(centre), headers=api.headers())
        assert created.status_code == 201, created.text
        rule_id = created.json()["id"]
        wait_for(lambda: len(sets(mine)) == 1, 5, "the centre's set")
        (update,) = sets(mine)
        assert [r["id"] for r in update["rules"]] == [rule_id]
        assert update["rules"][0]["condition"]["type"] == "clinical"

        # a rule that does not run at the edge changes nothing for the gateways
        hot = DEFAULT_PACK["battery-hot"].model_dump(mode="json", by_alias=True)
        assert (
            api.client.post("/v1/alert-rules", json=hot, headers=api.headers()).status_code == 201
        )

        disabled = api.client.post(f"/v1/alert-rules/{rule_id}/disable", headers=api.headers())
        assert disabled.status_code == 200
        wait_for(lambda: len(sets(mine)) == 2, 5, "the set without the disabled rule")
        assert sets(mine)[1]["rules"] == [] and sets(mine)[1]["seq"] > update["seq"]
        assert sets(theirs) == []  # another centre: never told
    finally:
        watcher.close()
