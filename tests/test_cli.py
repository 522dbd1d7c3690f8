"""The ``gramlink`` command: a process imports only the command it runs."""

from __future__ import annotations

import ast
import subprocess
import sys

HEAVY = ("gramlink.demo", "firmware_sim.fleet", "dashboards.push", "grafana_client")


def _imported_by(*argv: str) -> tuple[str, set[str]]:
    """What ``gramlink ARGV`` prints and which of :data:`HEAVY` it imported."""
    probe = (
        "import contextlib, io, sys\n"
        "from gramlink.cli import main\n"
        "out = io.StringIO()\n"
        "with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):\n"
        f"    main({list(argv)!r})\n"
        f"print(out.getvalue()); print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    *printed, modules = done.stdout.rstrip().splitlines()
    return "\n".join(printed), set(ast.literal_eval(modules))


def test_a_gateway_or_an_ingest_worker_does_not_import_the_demo_or_the_dashboards() -> None:
    for command in ("gateway", "ingest", "centre-broker"):
        printed, heavy = _imported_by(command, "--help")
        assert f"usage: gramlink {command}" in printed
        assert heavy == set(), command


def test_gramlink_help_still_lists_every_command() -> None:
    printed, heavy = _imported_by("--help")
    for command in ("alerts", "api", "centre-broker", "demo", "gateway", "ingest", "sim"):
        assert command in printed
    assert "gramlink.demo" in heavy  # every command registered
