"""Property-based: requests generated from the OpenAPI spec never get a 5xx.

The spec comes from an app built at import (building the spec needs no services);
generated requests go to a started API (``api`` fixture: SQLite, the real broker
and InfluxDB), with an admin token so that every operation is reachable.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.openapi import from_dict

from api.main import create_app
from api.settings import ApiSettings
from tests.api.conftest import MASTER, Api

schema = from_dict(create_app(ApiSettings(master_secret=MASTER)).openapi())


@pytest.mark.slow
@schema.parametrize()
@settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_errors(case: schemathesis.Case, api: Api) -> None:
    kwargs = case.as_transport_kwargs(base_url="http://testserver", headers=api.headers())
    if isinstance(kwargs.get("data"), bytes | str):
        kwargs["content"] = kwargs.pop("data")
    kwargs.pop("cookies", None)
    response = api.client.request(**kwargs)
    assert response.status_code < 500, f"{case.method} {case.path}: {response.text[:300]}"
