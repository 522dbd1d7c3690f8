"""The command catalogue and twin settings per kind: what the devices execute, checked."""

from __future__ import annotations

import pytest

from contract.commands import (
    COMMANDS,
    CONFIGS,
    CatalogueError,
    check_command,
    check_config,
    command_names,
)
from contract.metrics import DeviceKind
from firmware_sim.devices import KINDS


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_catalogued_command_is_one_the_simulated_device_executes(kind: str) -> None:
    device = KINDS[kind]
    for name in COMMANDS[DeviceKind(kind)]:
        assert name == "ota" or hasattr(device, f"_cmd_{name}"), (kind, name)
    assert DeviceKind(kind) in CONFIGS


def test_a_gateway_takes_no_command_and_has_no_twin() -> None:
    assert command_names("gateway") == []
    with pytest.raises(CatalogueError) as caught:
        check_command("gateway", "reboot", {})
    assert caught.value.field == "name"
    with pytest.raises(CatalogueError):
        check_config("gateway", {"interval_s": 5})


@pytest.mark.parametrize(
    ("name", "args", "field"),
    [
        ("set_interval", {"interval_s": 86_401}, "args.interval_s"),
        ("set_interval", {"interval_s": True}, "args.interval_s"),
        ("identify", {"duration_s": 1.5}, "args.duration_s"),
        ("ota", {"url": "http://x/f", "sha256": "A" * 64, "version": "2"}, "args.sha256"),
        ("ota", {"url": "http://x/f", "sha256": "a" * 64}, "args.version"),
        ("reboot", {"now": 1}, "args.now"),
        ("wipe", {}, "name"),
    ],
)
def test_bad_commands_name_the_field(name: str, args: dict[str, object], field: str) -> None:
    with pytest.raises(CatalogueError) as caught:
        check_command("router", name, args)
    assert caught.value.field == field


def test_defaults_are_filled_and_configs_normalised() -> None:
    assert check_command("thermometer", "identify", {}) == {"duration_s": 10}
    assert check_config("power", {"interval_s": 30, "low_battery_pct": 20}) == {
        "interval_s": 30,
        "low_battery_pct": 20.0,
    }
