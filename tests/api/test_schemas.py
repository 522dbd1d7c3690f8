"""The API's spelled-out device kinds stay in step with the contract."""

from __future__ import annotations

from typing import get_args

from api.schemas import DeviceOnlyKind
from contract.metrics import DeviceKind


def test_device_kinds_are_every_contract_kind_but_the_gateway() -> None:
    expected = tuple(k.value for k in DeviceKind if k is not DeviceKind.GATEWAY)
    assert get_args(DeviceOnlyKind) == expected
