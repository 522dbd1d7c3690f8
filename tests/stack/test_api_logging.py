"""``gramlink api`` logs in the one format: no uvicorn or alembic free text, no access lines."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from gramlink.services.process import free_port
from gramlink.stack import Stack
from tests.factories import wait_for
from tests.ingest.conftest import REPO
from tests.ingest.test_logging import LINE, QUIET


def test_api_lines_have_the_one_format(tmp_path: Path) -> None:
    stack = Stack(tmp_path / "home", free_port(), free_port())
    stack.up()
    port = free_port()
    argv = [sys.executable, "-m", "gramlink", "api", "--stack-home", str(stack.home)]
    stderr = tmp_path / "stderr"
    env = {**os.environ, "GRAMLINK_API_MASTER_SECRET": secrets.token_urlsafe(48)}
    try:
        with stderr.open("w") as err:
            api = subprocess.Popen(
                [*argv, "--port", str(port)],
                cwd=REPO,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
        try:
            wait_for(lambda: "event=api_started" in stderr.read_text(), 60, "API started")
            for _ in range(5):
                assert httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
        finally:
            api.send_signal(signal.SIGINT)
            api.wait(30)
    finally:
        stack.down()
    lines = stderr.read_text().splitlines()
    assert lines, "the API logged nothing"
    assert [line for line in lines if LINE.match(line) is None] == []
    loggers = {LINE.match(line).group("logger") for line in lines}  # type: ignore[union-attr]
    assert not [name for name in loggers if name.split(".")[0] in (*QUIET, "alembic")]
