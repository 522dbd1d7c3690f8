"""A centre's UTC offset and rated PV power (the solar-yield rule's facts), API and CSV."""

from __future__ import annotations

from api.schemas import Role
from tests.api.conftest import Api
from tests.factories import unique_id


def test_a_centre_carries_its_utc_offset_and_pv_rating(registry_api: Api) -> None:
    api, admin = registry_api, registry_api.headers()
    default = api.client.get(f"/v1/centres/{api.centre()}", headers=admin).json()
    assert default["utc_offset_h"] == 5.5 and default["pv_rated_w"] is None
    centre = api.centre(utc_offset_h=5.75, pv_rated_w=600)
    seen = api.client.get(f"/v1/centres/{centre}", headers=api.headers(Role.VIEWER)).json()
    assert (seen["utc_offset_h"], seen["pv_rated_w"]) == (5.75, 600)
    patched = api.client.patch(
        f"/v1/centres/{centre}", json={"pv_rated_w": 1200, "utc_offset_h": 6}, headers=admin
    ).json()
    assert (patched["utc_offset_h"], patched["pv_rated_w"]) == (6, 1200)
    for body, field in (
        ({"utc_offset_h": 15}, "body.utc_offset_h"),
        ({"pv_rated_w": 0}, "body.pv_rated_w"),
        ({"utc_offset_h": None}, "body.utc_offset_h"),
    ):
        answer = api.client.patch(f"/v1/centres/{centre}", json=body, headers=admin)
        assert answer.status_code == 422, answer.text
        fields = [e["field"] for e in answer.json().get("errors", [])] or [answer.json()["field"]]
        assert fields == [field]


def test_a_csv_rollout_sets_the_solar_facts_of_new_centres(api: Api) -> None:
    good, bad = unique_id("c"), unique_id("c")
    header = "centre_id,device_id,kind,model,centre_name,utc_offset_h,pv_rated_w\n"
    refused = api.client.post(
        "/v1/devices/bulk",
        content=header + f"{bad},{unique_id('d')},power,m,Bad,99,600\n",
        headers={**api.headers(), "content-type": "text/csv"},
    )
    assert refused.status_code == 422
    assert (2, "utc_offset_h") in [(r["row"], r["field"]) for r in refused.json()["rows"]]
    created = api.client.post(
        "/v1/devices/bulk",
        content=header + f"{good},{unique_id('d')},power,m,Good,4.5,450\n",
        headers={**api.headers(), "content-type": "text/csv"},
    )
    assert created.status_code == 201, created.text
    centre = api.client.get(f"/v1/centres/{good}", headers=api.headers()).json()
    assert (centre["utc_offset_h"], centre["pv_rated_w"]) == (4.5, 450)
