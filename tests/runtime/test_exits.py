"""runtime.exits: the exit codes systemd units and ``gramlink demo`` act on."""

from __future__ import annotations

import subprocess
import sys

import pytest

from runtime.exits import PERMANENT, ExitCode, is_permanent

# The numbers are an interface: systemd's RestartPreventExitStatus and scripts use them.
TABLE = {
    "OK": (0, False),
    "INTERNAL": (1, False),
    "CONFIG": (2, True),
    "DEPENDENCY_DOWN": (3, False),
    "REFUSED": (4, True),
    "SESSION_TAKEN_OVER": (5, True),
    "STORAGE_MISSING": (6, True),
}


def test_the_table_keeps_its_numbers_and_kinds() -> None:
    assert {code.name: (code.value, code.permanent) for code in ExitCode} == TABLE
    assert {code for code in ExitCode if code.permanent} == PERMANENT


@pytest.mark.parametrize("code", list(ExitCode))
def test_is_permanent_takes_the_number_a_parent_process_sees(code: ExitCode) -> None:
    assert is_permanent(int(code)) is code.permanent
    assert is_permanent(code) is code.permanent


@pytest.mark.parametrize("status", [None, -9, -15, 7, 127, 137, 255])
def test_unknown_statuses_and_signals_are_restarted(status: int | None) -> None:
    assert not is_permanent(status)


@pytest.mark.parametrize("code", [ExitCode.CONFIG, ExitCode.SESSION_TAKEN_OVER])
def test_a_process_exits_with_the_number_quietly(code: ExitCode) -> None:
    """sys.exit(ExitCode.X) gives the status X (an Enum that is not an int would give 1)."""
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            f"import sys; from runtime.exits import ExitCode; sys.exit(ExitCode.{code.name})",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )

    assert done.returncode == code.value
    assert is_permanent(done.returncode)
    assert done.stderr == ""
