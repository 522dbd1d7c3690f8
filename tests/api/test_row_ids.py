"""Integer ids in paths and bodies: one past the registry's INTEGER range is a 422
naming the field, not a 500 from the database driver (schemathesis found
``/v1/firmware/9223372036854775808``)."""

from __future__ import annotations

import pytest

from api.schemas import MAX_ROW_ID, Role
from tests.api.conftest import Api

PROBLEM = "application/problem+json"
TOO_BIG = (MAX_ROW_ID + 1, 2**63, 10**30)


@pytest.mark.parametrize("value", TOO_BIG)
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/firmware/{}"),
        ("DELETE", "/v1/firmware/{}"),
        ("GET", "/v1/campaigns/{}"),
        ("POST", "/v1/campaigns/{}/pause"),
        ("GET", "/v1/silences/{}"),
        ("GET", "/v1/notification-channels/{}"),
    ],
)
def test_an_id_past_the_column_is_a_422(api: Api, method: str, path: str, value: int) -> None:
    answer = api.client.request(method, path.format(value), headers=api.headers(Role.ADMIN))
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"] == PROBLEM
    assert "_id" in answer.text


def test_an_id_in_range_that_does_not_exist_is_a_404(api: Api) -> None:
    answer = api.client.get(f"/v1/firmware/{MAX_ROW_ID}", headers=api.headers(Role.ADMIN))
    assert answer.status_code == 404


def test_a_campaign_for_a_firmware_id_past_the_column_is_a_422(api: Api) -> None:
    answer = api.client.post(
        "/v1/campaigns",
        json={"name": "too big", "firmware_id": 2**63},
        headers=api.headers(Role.ADMIN),
    )
    assert answer.status_code == 422, answer.text
    assert "firmware_id" in answer.text
