"""Firmware files: upload, facts, downloads with a device's own login and HTTP Range;
a simulated router's cut download resumes where it stopped."""

from __future__ import annotations

import hashlib
import os
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from api.schemas import Role
from gramlink.services.process import free_port
from tests.factories import unique_id, wait_for
from tests.firmware.conftest import LiveApiFactory, RouterFactory
from tests.firmware.cutting_proxy import CuttingProxy

pytestmark = pytest.mark.timeout(180)


def test_upload_facts_download_with_range_and_delete(live_api_factory: LiveApiFactory) -> None:
    api = live_api_factory(campaign_interval_s=0, presence=False)
    logins = api.provision_routers([unique_id("c")])
    ((_device, login),) = logins.items()
    data = os.urandom(200_000)
    with api.http as http:
        refused = http.post(
            "/v1/firmware",
            data={"kind": "router", "model": "GL-R4G", "version": "2.0.0"},
            files={"file": ("fw.bin", data)},
            headers=api.headers(Role.TECHNICIAN),
        )
        assert refused.status_code == 403
        fw = api.upload("2.0.0", data)
        assert fw["sha256"] == hashlib.sha256(data).hexdigest()
        assert fw["size"] == len(data)
        again = http.post(
            "/v1/firmware",
            data={"kind": "router", "model": "GL-R4G", "version": "2.0.0"},
            files={"file": ("fw.bin", data)},
            headers=api.headers(),
        )
        assert again.status_code == 409
        listed = http.get("/v1/firmware?kind=router", headers=api.headers(Role.VIEWER)).json()
        assert [f["id"] for f in listed["items"]] == [fw["id"]]

        url = f"/v1/firmware/{fw['id']}/file"
        assert http.get(url).status_code == 401
        assert http.get(url, auth=(login[0], "wrong-password")).status_code == 401
        whole = http.get(url, auth=login)
        assert whole.status_code == 200 and whole.content == data
        assert whole.headers["accept-ranges"] == "bytes"
        tail = http.get(url, auth=login, headers={"Range": "bytes=150000-"})
        assert tail.status_code == 206
        assert tail.headers["content-range"] == f"bytes 150000-{len(data) - 1}/{len(data)}"
        assert tail.content == data[150_000:]
        assert http.get(url, auth=login, headers={"Range": "bytes=999999-"}).status_code == 416

        assert http.delete(f"/v1/firmware/{fw['id']}", headers=api.headers()).status_code == 204
        assert http.get(url, auth=login).status_code == 404
        audit = http.get("/v1/audit", headers=api.headers()).json()["items"]
    assert {"firmware.upload", "firmware.delete"} <= {e["action"] for e in audit}
    assert not api.store.path(fw["id"]).exists()


def test_a_download_cut_in_the_middle_resumes_with_a_range_request(
    live_api_factory: LiveApiFactory, routers: RouterFactory
) -> None:
    port = free_port()
    proxy = CuttingProxy(port, cut_after=120_000)
    proxy.start()
    try:
        api = live_api_factory(port=port, firmware_public_url=proxy.url)
        logins = api.provision_routers([unique_id("c")])
        fleet = routers(logins)
        (device_id,) = logins
        data = os.urandom(400_000)
        fw = api.upload("2.1.0", data)
        campaign = api.campaign(
            name="resume",
            firmware_id=fw["id"],
            stages=[100],
            deadline=(datetime.now(UTC) + timedelta(minutes=5)).isoformat(),
            respect_window=False,
        )
        wait_for(
            lambda: api.get_campaign(campaign["id"])["status"] == "completed", 60, "the campaign"
        )
    finally:
        proxy.stop()

    assert fleet.devices[device_id].fw == "2.1.0"
    downloads = [(line, rng) for line, rng in proxy.requests if "/file" in line]
    assert proxy.cuts == 1
    assert len(downloads) == 2, downloads
    assert downloads[0][1] is None
    resumed_at = int((downloads[1][1] or "bytes=0-").removeprefix("bytes=").rstrip("-"))
    assert 0 < resumed_at < len(data), downloads  # not from the start again
    assert api.store.served[fw["id"]] == 2
    row = api.get_campaign(campaign["id"])["devices"][0]
    assert row["state"] == "succeeded" and row["attempts"] == 1
    assert httpx.get(f"{api.url}/healthz", timeout=5).status_code == 200


def test_a_slow_download_shows_its_progress_in_the_campaign(
    live_api_factory: LiveApiFactory, routers: RouterFactory
) -> None:
    port = free_port()
    proxy = CuttingProxy(port, cut_after=None, delay_s=0.1)  # ~160 KiB/s
    proxy.start()
    try:
        api = live_api_factory(port=port, firmware_public_url=proxy.url)
        logins = api.provision_routers([unique_id("c")])
        fleet = routers(logins)
        (device_id,) = logins
        fw = api.upload("2.2.0", os.urandom(480_000))
        campaign = api.campaign(
            name="progress",
            firmware_id=fw["id"],
            stages=[100],
            deadline=(datetime.now(UTC) + timedelta(minutes=5)).isoformat(),
            respect_window=False,
        )
        seen: list[tuple[str, float | None]] = []

        def midway() -> bool:
            row = api.get_campaign(campaign["id"])["devices"][0]
            seen.append((row["state"], row["progress_pct"]))
            return row["state"] == "downloading" and 0 < (row["progress_pct"] or 0) < 100

        wait_for(midway, 60, "the download's progress")
        wait_for(
            lambda: api.get_campaign(campaign["id"])["status"] == "completed", 60, "the campaign"
        )
    finally:
        proxy.stop()
    assert fleet.devices[device_id].fw == "2.2.0"
    assert seen[-1][1] in (25.0, 50.0, 75.0), seen
