"""The dashboards as code: committed JSON equals the generated JSON, and it loads in the
pinned Grafana major (reads back through the SDK's models, known panel types only)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from dashboards import build, checks, datasource

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", list(build.DASHBOARDS))
def test_committed_json_is_the_generated_json(name: str) -> None:
    committed = build.GENERATED / f"{name}.json"
    assert committed.exists(), f"run gramlink dashboards build: {committed.name} missing"
    assert committed.read_text() == build.render(name), (
        f"dashboards/generated/{name}.json differs from dashboards/{name}.py: "
        "run gramlink dashboards build and commit both"
    )


def test_no_generated_file_without_a_definition() -> None:
    names = {path.stem for path in build.GENERATED.glob("*.json")}
    assert names == set(build.DASHBOARDS)


@pytest.mark.parametrize("name", list(build.DASHBOARDS))
def test_dashboard_loads_in_the_pinned_grafana_major(name: str) -> None:
    assert checks.problems(build.model(name)) == []


def test_an_option_the_models_do_not_know_is_caught() -> None:
    data = build.model("power")
    data["panels"][0]["options"]["sparkles"] = True  # no such option in Grafana 11
    data["panels"][1]["type"] = "worldmap-panel"  # a plugin, not in Grafana 11 itself
    found = checks.problems(data)
    assert any("sparkles" in line for line in found)
    assert any("worldmap-panel" in line for line in found)


def test_every_query_uses_the_one_datasource_and_the_variables_chain() -> None:
    for name in build.DASHBOARDS:
        data = build.model(name)
        variables = {v["name"]: v for v in data["templating"]["list"]}
        assert [n for n in ("state", "district", "centre") if n in variables] == [
            "state",
            "district",
            "centre",
        ]
        for variable in variables.values():
            assert variable["multi"] is True and variable["includeAll"] is True
            assert variable["datasource"]["uid"] == datasource.UID
        assert "$state" in variables["district"]["query"]
        assert "$district" in variables["centre"]["query"]
        for panel in checks.panels(data):
            for target in panel.get("targets", []):
                assert target["datasource"]["uid"] == datasource.UID, panel["title"]
                assert target["rawQuery"] is True


def gramlink(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gramlink", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_build_writes_then_check_finds_a_hand_edit(tmp_path: Path) -> None:
    written = gramlink("dashboards", "build", "--dir", str(tmp_path))
    assert written.returncode == 0, written.stderr
    assert written.stdout.count("written") == len(build.DASHBOARDS)
    again = gramlink("dashboards", "build", "--dir", str(tmp_path))
    assert again.stdout.count("unchanged") == len(build.DASHBOARDS)
    assert gramlink("dashboards", "build", "--check", "--dir", str(tmp_path)).returncode == 0
    edited = tmp_path / "centre.json"
    edited.write_text(edited.read_text().replace("WAN latency", "WAN delay"))
    check = gramlink("dashboards", "build", "--check", "--dir", str(tmp_path))
    assert check.returncode == 1
    assert "centre.json differs" in check.stdout


def test_round_trip_is_stable() -> None:
    for name in build.DASHBOARDS:
        once = checks.read_back(build.model(name))
        assert checks.read_back(once) == once
        assert json.loads(build.render(name))["uid"].startswith("gramlink-")
