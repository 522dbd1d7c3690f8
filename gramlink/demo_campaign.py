"""The demo's firmware campaign: a router firmware rolled out in two stages over the
hub's and its spokes' routers, through the gateways' firmware caches, shown in the
live line (``ota 2/3 succeeded, stage 2/2, running``).

It runs any time of day (``respect_window: false``): the demo's centres would
otherwise wait for their local closing time (docs/api.md, "Firmware campaigns").
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from gramlink.services import ServiceError

KIND, MODEL, VERSION = "router", "GL-R4G", "1.1.0"  # firmware_sim.devices.router.Router
IMAGE_BYTES = 512 * 1024


class DemoCampaign:
    def __init__(self, api: httpx.Client) -> None:
        self.api = api
        self.campaign_id: int | None = None

    def start(self, hub: str) -> None:
        """Upload the firmware (or find it from an earlier run) and start the campaign."""
        firmware_id = self._firmware()
        answer = self.api.post(
            "/v1/campaigns",
            json={
                "name": f"demo routers {VERSION}",
                "firmware_id": firmware_id,
                "target": {"hub_id": hub},
                "stages": [34, 100],
                "success_threshold": 1.0,
                "failure_threshold": 0.5,
                "deadline": (datetime.now(UTC) + timedelta(hours=2)).isoformat(),
                "respect_window": False,
                "command_ttl_s": 120,
            },
        )
        if answer.is_error:
            raise ServiceError(f"the API refused the demo campaign: {answer.text[:300]}")
        self.campaign_id = answer.json()["id"]

    def _firmware(self) -> int:
        known = self.api.get("/v1/firmware", params={"kind": KIND, "model": MODEL}).json()
        for item in known["items"]:
            if item["version"] == VERSION:
                found: int = item["id"]
                return found
        answer = self.api.post(
            "/v1/firmware",
            data={"kind": KIND, "model": MODEL, "version": VERSION},
            files={"file": (f"gl-r4g-{VERSION}.bin", os.urandom(IMAGE_BYTES))},
        )
        if answer.is_error:
            raise ServiceError(f"the API refused the demo firmware: {answer.text[:300]}")
        made: int = answer.json()["id"]
        return made

    def progress(self) -> str:
        """``ota 1/3 succeeded, stage 2/2, running`` (or why it is not known)."""
        if self.campaign_id is None:
            return "ota -"
        try:
            answer = self.api.get(f"/v1/campaigns/{self.campaign_id}", params={"devices": False})
        except httpx.HTTPError:
            return "ota ?"
        if answer.is_error:
            return "ota ?"
        body: dict[str, Any] = answer.json()
        total = sum(stage["devices"] for stage in body["stage_progress"])
        done = body["counts"].get("succeeded", 0)
        stage = f"stage {body['current_stage'] + 1}/{len(body['stages'])}"
        return f"ota {done}/{total} succeeded, {stage}, {body['status']}"
