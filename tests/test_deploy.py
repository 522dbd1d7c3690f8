"""The systemd units and the exit-code table agree with ``runtime.exits``."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from runtime.exits import PERMANENT, ExitCode

ROOT = Path(__file__).resolve().parent.parent
UNITS = sorted((ROOT / "deploy" / "systemd").glob("*.service"))


@pytest.mark.parametrize("unit", UNITS, ids=[u.name for u in UNITS])
def test_units_restart_except_on_permanent_codes(unit: Path) -> None:
    text = unit.read_text()
    assert re.search(r"^Restart=always$", text, re.M)
    found = re.search(r"^RestartPreventExitStatus=(.*)$", text, re.M)
    assert found is not None
    assert {int(code) for code in found.group(1).split()} == {int(c) for c in PERMANENT}


def test_every_exit_code_is_in_the_architecture_table() -> None:
    doc = (ROOT / "docs" / "architecture.md").read_text()
    for code in ExitCode:
        row = re.search(rf"^\| {int(code)} \| `{code.name}` \|(.*)$", doc, re.M)
        assert row is not None, code
        assert ("permanent" in row.group(1)) is code.permanent, row.group(0)
