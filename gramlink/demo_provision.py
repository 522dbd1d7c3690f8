"""The demo's rollout through the API: a hub and its spokes, a gateway and devices each.

On the first run everything is provisioned with one bulk CSV (all rows or none);
on later runs the registry already holds it, and the credentials are derived
again in memory from the master secret and the versions the API reports, the
same way the API and the gateways derive them. Nothing is written to disk.

Every run also writes each centre's site facts (latitude, longitude, UTC offset,
the PV array's rated power, as the simulator has them) into the registry when
they differ, for the alert rules that need them (expected solar yield).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

import httpx

from contract.provisioning import centre_key, device_password, encode_key, mqtt_username
from firmware_sim.devices import centre_layout
from firmware_sim.site import SiteFacts
from gramlink.services import ServiceError

KEY_VERSION = 1  # the API's default GRAMLINK_API_KEY_VERSION, which the demo keeps


@dataclass
class CentreCredentials:
    centre: str
    gateway_id: str
    gateway_password: str = ""
    centre_key: str = ""
    devices: dict[str, tuple[str, str]] = field(default_factory=dict)  # id -> (user, password)


def rollout_csv(hub: str, spokes: list[str], devices_per_centre: int) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["centre_id", "device_id", "kind", "model", "centre_name", "hub_id"])
    for centre in [hub, *spokes]:
        hub_id = "" if centre == hub else hub
        name = f"{centre} centre"
        writer.writerow([centre, f"{centre}-gw", "gateway", "pi4-gateway", name, hub_id])
        for device_id, cls in centre_layout(centre, devices_per_centre):
            writer.writerow([centre, device_id, cls.kind.value, cls.model, name, hub_id])
    return out.getvalue()


def provision(
    api: httpx.Client,
    master_secret: bytes,
    hub: str,
    spokes: list[str],
    devices_per_centre: int,
    sites: Mapping[str, SiteFacts],
) -> dict[str, CentreCredentials]:
    """Provision the rollout if the hub is unknown, record the sites; return the credentials."""
    centres = [hub, *spokes]
    result = {c: CentreCredentials(c, f"{c}-gw") for c in centres}
    if api.get(f"/v1/centres/{hub}").status_code == 404:
        _rollout(api, hub, spokes, devices_per_centre, result)
    else:
        _derive_again(api, master_secret, result)
    for centre in centres:
        record_site(api, centre, sites[centre])
    return result


def record_site(api: httpx.Client, centre: str, site: SiteFacts) -> None:
    """PATCH the centre's location, UTC offset and PV rating where the registry differs."""
    wanted = asdict(site)  # latitude, longitude, utc_offset_h, pv_rated_w: the centre schema's
    response = api.get(f"/v1/centres/{centre}")
    response.raise_for_status()
    held = response.json()
    changed = {k: v for k, v in wanted.items() if held.get(k) != v}
    if changed:
        answer = api.patch(f"/v1/centres/{centre}", json=changed)
        if answer.is_error:
            raise ServiceError(
                f"the API refused centre {centre}'s site facts {sorted(changed)}: "
                f"{answer.status_code} {answer.text[:300]}"
            )


def _rollout(
    api: httpx.Client,
    hub: str,
    spokes: list[str],
    devices_per_centre: int,
    result: dict[str, CentreCredentials],
) -> None:
    response = api.post(
        "/v1/devices/bulk",
        content=rollout_csv(hub, spokes, devices_per_centre),
        headers={"content-type": "text/csv"},
    )
    response.raise_for_status()
    body = response.json()
    for row in body["credentials"]:
        creds = result[row["centre_id"]]
        if row["kind"] == "gateway":
            creds.gateway_password = row["password"]
        else:
            creds.devices[row["device_id"]] = (row["username"], row["password"])
    for key in body["centre_keys"]:
        result[key["centre_id"]].centre_key = key["centre_key"]


def _derive_again(
    api: httpx.Client, master_secret: bytes, result: dict[str, CentreCredentials]
) -> dict[str, CentreCredentials]:
    for centre, creds in result.items():
        gateways = api.get("/v1/gateways", params={"centre_id": centre, "limit": 100}).json()
        gateway = next(g for g in gateways["items"] if g["id"] == creds.gateway_id)
        key = centre_key(master_secret, centre, KEY_VERSION)
        creds.centre_key = encode_key(key)
        creds.gateway_password = device_password(
            key, creds.gateway_id, gateway["credential_version"]
        )
        devices = api.get("/v1/devices", params={"centre_id": centre, "limit": 500}).json()
        for device in devices["items"]:
            if device["status"] in ("suspended", "decommissioned"):
                continue
            password = device_password(key, device["id"], device["credential_version"])
            creds.devices[device["id"]] = (mqtt_username(centre, device["id"]), password)
    return result
