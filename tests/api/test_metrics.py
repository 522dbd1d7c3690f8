"""``/metrics``: Prometheus text with requests by route template and broker login timings."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from tests.api.conftest import Api
from tests.factories import unique_id


def _samples(api: Api) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    answer = api.client.get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(answer.text)
        for s in family.samples
    }


def test_requests_are_counted_by_route_template_and_logins_by_change(api: Api) -> None:
    centre = api.centre()
    missing = unique_id("d")
    assert api.client.get(f"/v1/devices/{missing}", headers=api.headers()).status_code == 404
    body = {"id": unique_id("d"), "centre_id": centre, "kind": "router", "model": "m"}
    assert api.client.post("/v1/devices", json=body, headers=api.headers()).status_code == 201
    samples = _samples(api)
    labels = {"method": "GET", "route": "/v1/devices/{device_id}", "status": "404"}
    assert samples[("gramlink_api_requests_total", frozenset(labels.items()))] == 1
    assert not any(missing in str(key) for key in samples)  # ids never become labels
    assert samples[("gramlink_api_login_changes_total", frozenset())] >= 1
    assert samples[("gramlink_api_login_apply_seconds_count", frozenset())] >= 1
