"""The demo writes each simulated centre's site facts into the registry, once.

A recording stand-in for the registry's centre endpoints (GET and PATCH
``/v1/centres/{id}``, whose schema takes ``latitude``, ``longitude``,
``utc_offset_h`` and ``pv_rated_w``), so the request bodies can be read back.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from firmware_sim.site import site_facts
from gramlink.demo import centre_seed
from gramlink.demo_provision import record_site
from gramlink.services import ServiceError


class Registry:
    def __init__(self) -> None:
        self.centres: dict[str, dict[str, Any]] = {"spoke1": {"id": "spoke1", "name": "s"}}
        self.patches: list[dict[str, Any]] = []
        self.refuse = False  # an API whose centre schema does not take the fields

    def __call__(self, request: httpx.Request) -> httpx.Response:
        centre = request.url.path.rsplit("/", 1)[-1]
        if request.method == "PATCH" and self.refuse:
            return httpx.Response(422, json={"errors": [{"field": "body.pv_rated_w"}]})
        if request.method == "PATCH":
            body = json.loads(request.content)
            self.patches.append(body)
            self.centres[centre].update(body)
        return httpx.Response(200, json=self.centres[centre])


def test_the_site_facts_go_into_the_registry_once() -> None:
    registry = Registry()
    site = site_facts(centre_seed("spoke1"), "spoke1", 7)
    with httpx.Client(base_url="http://api", transport=httpx.MockTransport(registry)) as api:
        record_site(api, "spoke1", site)
        record_site(api, "spoke1", site)  # a second demo run: nothing changed, nothing sent
    assert registry.patches == [
        {
            "latitude": site.latitude,
            "longitude": site.longitude,
            "utc_offset_h": 5.5,
            "pv_rated_w": site.pv_rated_w,
        }
    ]
    assert site.pv_rated_w is not None and 800.0 <= site.pv_rated_w <= 2200.0


def test_an_api_that_refuses_the_facts_stops_the_demo_with_one_line() -> None:
    registry = Registry()
    registry.refuse = True
    site = site_facts(centre_seed("spoke1"), "spoke1", 7)
    with (
        httpx.Client(base_url="http://api", transport=httpx.MockTransport(registry)) as api,
        pytest.raises(ServiceError, match=r"refused centre spoke1's site facts .*422.*pv_rated_w"),
    ):
        record_site(api, "spoke1", site)
