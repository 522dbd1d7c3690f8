"""The registry faults found by following docs/api.md (issue #15): a rollout onto a hub made
earlier, the gateway's key in the CSV sheet, the simulator running the sheet's devices, and
the centre list agreeing with the centre item."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from contract.provisioning import MIN_KEY_BYTES, decode_key
from firmware_sim.fleet import Fleet
from firmware_sim.settings import load_settings
from gramlink.commands.sim import fleet_config
from gramlink.services import MosquittoService
from tests.api.conftest import Api
from tests.factories import unique_id, wait_for


def _bulk(api: Api, rows: list[dict[str, str]], **params: str) -> Any:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return api.client.post(
        "/v1/devices/bulk",
        params=params,
        content=out.getvalue(),
        headers={**api.headers(), "content-type": "text/csv"},
    )


def _rows(spoke: str, hub: str, ids: list[tuple[str, str]]) -> list[dict[str, str]]:
    return [
        {
            "centre_id": spoke,
            "device_id": device,
            "kind": kind,
            "model": "m1",
            "centre_name": f"Spoke {spoke}",
            "hub_id": hub,
        }
        for device, kind in ids
    ]


def test_the_docs_rollout_onto_an_earlier_hub_gives_a_sheet_the_simulator_runs(
    api: Api, mosquitto: MosquittoService, tmp_path: Path
) -> None:
    hub = api.centre(district="Sitapur", state="UP")
    spoke = unique_id("spoke")
    gateway, bp, router = f"gw-{spoke}", f"bp-{spoke}-1", f"rt-{spoke}"  # the docs' own ids
    rows = _rows(spoke, hub, [(gateway, "gateway"), (bp, "bp_monitor"), (router, "router")])
    answer = _bulk(api, rows, format="csv")
    assert answer.status_code == 201, answer.text
    sheet = list(csv.DictReader(io.StringIO(answer.text)))
    keys = {row["device_id"]: row["centre_key"] for row in sheet}
    assert len(decode_key(keys[gateway])) >= MIN_KEY_BYTES, "the gateway's row carries its key"
    assert keys[bp] == keys[router] == ""

    path = tmp_path / "credentials.csv"
    path.write_text(answer.text)
    config = fleet_config(load_settings(credentials=path, mqtt_url=mosquitto.url))
    fleet = Fleet(config)
    assert sorted(fleet.devices) == sorted([bp, router]), "the sheet's devices, gateways aside"
    assert type(fleet.devices[bp]).__name__ == "BpMonitor"
    fleet.start()
    try:
        for device in (bp, router):
            wait_for(
                lambda d=device: api.client.get(f"/v1/devices/{d}", headers=api.headers()).json()[
                    "online"
                ],
                20,
                f"{device} online with its own login",
            )
    finally:
        fleet.stop(drain_s=2)


def test_a_rollout_hub_that_is_a_spoke_or_unknown_is_refused_by_row(api: Api) -> None:
    hub = api.centre()
    spoke = api.centre(hub_id=hub)
    bad = _rows(unique_id("s"), spoke, [(unique_id("rt"), "router")])
    bad += _rows(unique_id("s"), unique_id("nohub"), [(unique_id("rt"), "router")])
    answer = _bulk(api, bad)
    assert answer.status_code == 422
    assert [(r["row"], r["field"], r["message"]) for r in answer.json()["rows"]] == [
        (2, "hub_id", f"{spoke} is a spoke and cannot be a hub"),
        (3, "hub_id", "unknown hub centre"),
    ]


def test_the_centre_list_shows_spokes_like_the_item_and_filters(api: Api) -> None:
    district, state = unique_id("dist"), unique_id("st")
    hub = api.centre(district=district, state=state)
    spokes = sorted(api.centre(district=district, state=state, hub_id=hub) for _ in range(2))
    api.centre(district=district)  # same district, another state, no hub
    headers = api.headers()

    def listed(**params: str) -> dict[str, list[str]]:
        answer = api.client.get("/v1/centres", params=params, headers=headers)
        assert answer.status_code == 200, answer.text
        return {c["id"]: c["spokes"] for c in answer.json()["items"]}

    by_state = listed(state=state)
    assert by_state == {hub: spokes, spokes[0]: [], spokes[1]: []}
    item = api.client.get(f"/v1/centres/{hub}", headers=headers).json()
    assert item["spokes"] == by_state[hub] == spokes
    assert sorted(listed(hub_id=hub)) == spokes
    assert len(listed(district=district)) == 4
