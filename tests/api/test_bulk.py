"""Bulk provisioning from CSV: all or nothing, with every bad row reported."""

from __future__ import annotations

import csv
import io

from gramlink.services import MosquittoService
from tests.api.conftest import Api
from tests.api.mqtt_helpers import refused
from tests.factories import unique_id


def _csv(rows: list[dict[str, str]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def _rollout(hub: str, spoke: str) -> list[dict[str, str]]:
    rows = []
    for centre, hub_id in ((hub, ""), (spoke, hub)):
        for kind in ("gateway", "router", "power", "bp_monitor"):
            rows.append(
                {
                    "centre_id": centre,
                    "device_id": unique_id(kind[:2]),
                    "kind": kind,
                    "model": "m1",
                    "centre_name": f"Centre {centre}",
                    "hub_id": hub_id,
                }
            )
    return rows


def test_one_bad_row_changes_nothing_and_is_reported(
    registry_api: Api, mosquitto: MosquittoService
) -> None:
    api = registry_api
    hub, spoke = unique_id("hub"), unique_id("spoke")
    rows = _rollout(hub, spoke)
    rows[5]["kind"] = "toaster"
    answer = api.client.post(
        "/v1/devices/bulk",
        content=_csv(rows),
        headers={**api.headers(), "content-type": "text/csv"},
    )
    assert answer.status_code == 422
    assert answer.headers["content-type"] == "application/problem+json"
    assert [(r["row"], r["field"]) for r in answer.json()["rows"]] == [(7, "kind")]
    assert api.client.get(f"/v1/centres/{hub}", headers=api.headers()).status_code == 404
    listed = api.client.get("/v1/devices", params={"centre_id": hub}, headers=api.headers())
    assert listed.json()["total"] == 0
    assert refused(mosquitto, rows[1]["device_id"], "anything")


def test_a_rollout_creates_centres_devices_and_working_credentials(
    registry_api: Api, mosquitto: MosquittoService
) -> None:
    api = registry_api
    hub, spoke = unique_id("hub"), unique_id("spoke")
    rows = _rollout(hub, spoke)
    answer = api.client.post(
        "/v1/devices/bulk",
        params={"format": "csv"},
        content=_csv(rows),
        headers={**api.headers(), "content-type": "text/csv"},
    )
    assert answer.status_code == 201, answer.text
    assert answer.headers["content-type"].startswith("text/csv")
    creds = list(csv.DictReader(io.StringIO(answer.text)))
    header = ["centre_id", "device_id", "kind", "model", "username", "password", "centre_key"]
    assert list(creds[0]) == header
    assert {c["device_id"] for c in creds} == {r["device_id"] for r in rows}
    hub_view = api.client.get(f"/v1/centres/{hub}", headers=api.headers()).json()
    assert hub_view["spokes"] == [spoke]
    device = next(c for c in creds if c["kind"] == "bp_monitor")
    assert device["username"] == f"{device['centre_id']}/{device['device_id']}"
    assert not refused(mosquitto, device["username"], device["password"])


def test_a_duplicate_of_an_existing_device_is_reported(registry_api: Api) -> None:
    api = registry_api
    centre = api.centre()
    existing = unique_id("d")
    body = {"id": existing, "centre_id": centre, "kind": "router", "model": "m"}
    assert api.client.post("/v1/devices", json=body, headers=api.headers()).status_code == 201
    rows = [
        {"centre_id": centre, "device_id": unique_id("d"), "kind": "router", "model": "m"},
        {"centre_id": centre, "device_id": existing, "kind": "router", "model": "m"},
        {"centre_id": centre, "device_id": "Bad Id'", "kind": "router", "model": "m"},
    ]
    answer = api.client.post(
        "/v1/devices/bulk",
        content=_csv(rows),
        headers={**api.headers(), "content-type": "text/csv"},
    )
    assert answer.status_code == 422
    assert sorted((r["row"], r["field"]) for r in answer.json()["rows"]) == [
        (3, "device_id"),
        (4, "id"),
    ]
    listed = api.client.get("/v1/devices", params={"centre_id": centre}, headers=api.headers())
    assert listed.json()["total"] == 1
