"""The demo's supervisor with real child processes: transient ends are restarted with
backoff and said so; a permanent exit code stops everything with the child's own line."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from gramlink.children import Child, PermanentExit, Supervisor
from runtime.exits import ExitCode
from tests.factories import wait_for


def script(body: str) -> list[str]:
    return [sys.executable, "-c", f"import sys, time\n{body}"]


SLEEPER = script("print('child up', flush=True)\ntime.sleep(600)")


@pytest.fixture
def supervised(tmp_path: Path) -> Iterator[tuple[Supervisor, list[str]]]:
    lines: list[str] = []
    supervisor = Supervisor(lines.append, restart_min_s=0.1, restart_max_s=0.4)
    yield supervisor, lines
    supervisor.stop_all()


def polled(supervisor: Supervisor, check) -> bool:  # type: ignore[no-untyped-def]
    supervisor.poll()
    return bool(check())


def test_a_child_killed_by_a_user_is_restarted_and_said_so(supervised, tmp_path: Path) -> None:
    supervisor, lines = supervised
    gateway = supervisor.start(Child("gateway-hub", SLEEPER, {}, tmp_path))
    other = supervisor.start(Child("ingest", SLEEPER, {}, tmp_path))
    wait_for(lambda: "child up" in gateway.last_lines(), 10, "child started")
    first_pid = gateway.pid
    assert first_pid is not None
    os.kill(first_pid, signal.SIGKILL)  # a user watching store-and-forward

    wait_for(lambda: polled(supervisor, lambda: gateway.pid != first_pid), 10, "restart")
    assert gateway.exit_code() is None  # running again
    assert other.exit_code() is None and supervisor.restarts("ingest") == 0
    assert lines[0].startswith("gateway-hub ended (killed by SIGKILL); restarting in ")
    assert lines[1] == f"gateway-hub restarted (pid {gateway.pid}, restart 1)"
    assert supervisor.down() == []


def test_transient_exit_codes_restart_with_backoff(supervised, tmp_path: Path) -> None:
    supervisor, lines = supervised
    flaky = supervisor.start(
        Child("ingest", script(f"sys.exit({int(ExitCode.DEPENDENCY_DOWN)})"), {}, tmp_path)
    )
    wait_for(lambda: polled(supervisor, lambda: supervisor.restarts("ingest") >= 3), 20, "restarts")
    ended = [line for line in lines if line.startswith("ingest ended")]
    assert ended[0].startswith("ingest ended (exit 3 (dependency down)); restarting in ")
    delays = [float(line.rsplit(" in ", 1)[1].removesuffix(" s")) for line in ended]
    assert delays[0] <= 0.1 and 0.2 <= delays[2] <= 0.4  # doubling, jittered, capped
    assert flaky.name in lines[1]


@pytest.mark.parametrize("code", sorted(c.value for c in ExitCode if c.permanent))
def test_a_permanent_exit_stops_with_the_childs_line(supervised, tmp_path, code) -> None:
    supervisor, lines = supervised
    healthy = supervisor.start(Child("api", SLEEPER, {}, tmp_path))
    body = f"print('level=ERROR event=refused why=bad-password', flush=True)\nsys.exit({code})"
    supervisor.start(Child("gateway-hub", script(body), {}, tmp_path))
    with pytest.raises(PermanentExit) as raised:
        wait_for(lambda: polled(supervisor, lambda: False), 10, "the permanent exit")
    assert raised.value.code == code
    message = str(raised.value)
    assert message.startswith(f"gateway-hub stopped: exit {code} (")
    assert "event=refused why=bad-password" in message
    assert "\n" not in message
    assert not [line for line in lines if "restart" in line]
    supervisor.stop_all()
    assert healthy.exit_code() is not None  # everything else is stopped
