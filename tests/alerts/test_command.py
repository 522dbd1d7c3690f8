"""``gramlink alerts --stack-home``: the engine alone on a local stack, with its own
account, stopped by SIGTERM with exit 0; a bad setting is one line and exit 2."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from gramlink.services.process import free_port
from tests.factories import wait_for

REPO = Path(__file__).resolve().parents[2]


def gramlink(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gramlink", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


@pytest.fixture
def stack_home(tmp_path: Path) -> Iterator[Path]:
    home = tmp_path / "home"
    ports = ["--mqtt-port", str(free_port()), "--influx-port", str(free_port())]
    up = gramlink("stack", "up", "--home", str(home), *ports)
    assert up.returncode == 0, up.stderr
    yield home
    gramlink("stack", "down", "--home", str(home))


@pytest.mark.slow
def test_gramlink_alerts_runs_on_a_stack_with_its_own_account(
    stack_home: Path, tmp_path: Path
) -> None:
    log = tmp_path / "alerts.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRAMLINK_")}
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gramlink", "alerts", "--stack-home", str(stack_home)],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for(lambda: "alert_engine_started" in log.read_text(), 30, "the engine up")
        assert "alert_engine_loaded" in log.read_text()
        assert (stack_home / "api.sqlite").exists()  # the registry, migrated
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0, log.read_text()[-2000:]
    assert "alert_engine_stopped" in log.read_text()


def test_a_bad_setting_is_one_line_and_exit_2() -> None:
    env = {**os.environ, "GRAMLINK_ALERTS_LAG_S": "-5"}
    done = gramlink("alerts", env=env)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "error: GRAMLINK_ALERTS_LAG_S Input should be greater than or equal to 0"
    ]
