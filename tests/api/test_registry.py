"""Registry behaviour on SQLite and PostgreSQL: centres, devices, paging, errors, audit."""

from __future__ import annotations

from api.schemas import Role
from tests.api.conftest import Api
from tests.factories import unique_id

PROBLEM = "application/problem+json"


def test_hub_lists_its_spokes_and_spokes_filter_by_hub(registry_api: Api) -> None:
    hub = registry_api.centre(district="Sitapur", country="IN")
    spokes = sorted(registry_api.centre(hub_id=hub) for _ in range(3))
    body = registry_api.client.get(f"/v1/centres/{hub}", headers=registry_api.headers()).json()
    assert body["spokes"] == spokes
    assert body["online"] is False
    page = registry_api.client.get(
        "/v1/centres", params={"hub_id": hub}, headers=registry_api.headers(Role.VIEWER)
    ).json()
    assert [c["id"] for c in page["items"]] == spokes
    assert page["total"] == 3


def test_devices_are_paginated_and_filtered(registry_api: Api) -> None:
    centre = registry_api.centre()
    client, headers = registry_api.client, registry_api.headers()
    for i in range(5):
        kind = "bp_monitor" if i % 2 else "thermometer"
        body = {"id": f"{centre}-d{i}", "centre_id": centre, "kind": kind, "model": "m1"}
        assert client.post("/v1/devices", json=body, headers=headers).status_code == 201
    first = client.get("/v1/devices", params={"centre_id": centre, "limit": 2}, headers=headers)
    second = client.get(
        "/v1/devices", params={"centre_id": centre, "limit": 2, "offset": 2}, headers=headers
    )
    assert first.json()["total"] == 5
    ids = [d["id"] for d in first.json()["items"] + second.json()["items"]]
    assert ids == [f"{centre}-d{i}" for i in range(4)]
    bp = client.get(
        "/v1/devices", params={"centre_id": centre, "kind": "bp_monitor"}, headers=headers
    ).json()
    assert {d["id"] for d in bp["items"]} == {f"{centre}-d1", f"{centre}-d3"}
    assert all(d["status"] == "provisioned" for d in bp["items"])


def test_not_found_conflict_and_validation_are_problems(registry_api: Api) -> None:
    client, headers = registry_api.client, registry_api.headers()
    centre = registry_api.centre()
    missing = client.get(f"/v1/devices/{unique_id('nope')}", headers=headers)
    assert missing.status_code == 404
    assert missing.headers["content-type"] == PROBLEM
    assert missing.json()["status"] == 404
    again = client.post("/v1/centres", json={"id": centre, "name": "x"}, headers=headers)
    assert again.status_code == 409
    bad = client.post(
        "/v1/centres", json={"id": unique_id("c"), "name": "x", "latitude": 123}, headers=headers
    )
    assert bad.status_code == 422
    assert bad.headers["content-type"] == PROBLEM
    assert [e["field"] for e in bad.json()["errors"]] == ["body.latitude"]
    unknown_centre = client.post(
        "/v1/devices",
        json={"id": unique_id("d"), "centre_id": unique_id("c"), "kind": "router", "model": "m"},
        headers=headers,
    )
    assert unknown_centre.status_code == 422
    assert unknown_centre.json()["field"] == "body.centre_id"


def test_a_centre_with_devices_cannot_be_deleted(registry_api: Api) -> None:
    client, headers = registry_api.client, registry_api.headers()
    centre = registry_api.centre()
    device = {"id": unique_id("d"), "centre_id": centre, "kind": "router", "model": "m"}
    assert client.post("/v1/devices", json=device, headers=headers).status_code == 201
    assert client.delete(f"/v1/centres/{centre}", headers=headers).status_code == 409
    empty = registry_api.centre()
    assert client.delete(f"/v1/centres/{empty}", headers=headers).status_code == 204
    assert client.get(f"/v1/centres/{empty}", headers=headers).status_code == 404


def test_every_mutation_is_audited_with_before_and_after(registry_api: Api) -> None:
    client, headers = registry_api.client, registry_api.headers()
    centre = registry_api.centre()
    response = client.patch(f"/v1/centres/{centre}", json={"village": "Rampur"}, headers=headers)
    assert response.status_code == 200
    log = client.get("/v1/audit", params={"entity_id": centre}, headers=headers).json()
    actions = [e["action"] for e in log["items"]]
    assert actions == ["centre.update", "centre.create"]
    update = log["items"][0]
    assert update["before"]["village"] is None
    assert update["after"]["village"] == "Rampur"
    assert update["actor"] == "token:test-admin"
