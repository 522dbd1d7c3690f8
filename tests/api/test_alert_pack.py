"""``gramlink alerts install-defaults``: the default pack, idempotently; edited rules kept."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from alerting.defaults import DEFAULT_PACK
from api.db.models import AlertRule
from gramlink.cli import main
from tests.api.alert_helpers import sessions
from tests.api.conftest import MASTER, Api, ApiFactory


def _rows(api: Api) -> dict[str, tuple[Any, ...]]:
    with sessions(api)() as session:
        rows = session.scalars(select(AlertRule).where(AlertRule.pack_key.is_not(None)))
        return {r.pack_key: (r.id, r.version, r.enabled, r.spec, r.updated_at) for r in rows}


def _install(db_url: str, capsys: pytest.CaptureFixture[str]) -> list[str]:
    assert main(["alerts", "install-defaults", "--db-url", db_url]) == 0
    return capsys.readouterr().out.splitlines()


def test_install_defaults_twice_changes_nothing_and_keeps_an_edited_rule(
    api_factory: ApiFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("GRAMLINK_API_MASTER_SECRET", MASTER)
    db_url = f"sqlite:///{tmp_path / 'registry.sqlite'}"
    api = api_factory(db_url)
    first = _install(db_url, capsys)
    assert first[-1] == f"{len(DEFAULT_PACK)} default rules: {len(DEFAULT_PACK)} installed, 0 kept"
    installed = _rows(api)
    assert set(installed) == set(DEFAULT_PACK)
    assert installed["battery-low"][0] == "battery-low"  # the pack key is the id
    listed = api.client.get("/v1/alert-rules", params={"limit": 100}, headers=api.headers())
    by_id = {r["id"]: r for r in listed.json()["items"]}
    assert by_id["spo2-low"]["pack_key"] == "spo2-low" and by_id["spo2-low"]["clinical"] is True
    assert by_id["battery-low"]["condition"]["for"] == 600

    second = _install(db_url, capsys)
    assert second[-1] == f"{len(DEFAULT_PACK)} default rules: 0 installed, {len(DEFAULT_PACK)} kept"
    assert _rows(api) == installed

    edited = {**by_id["battery-low"]["condition"], "value": 30, "clears": 35}
    answer = api.client.patch(
        "/v1/alert-rules/battery-low", json={"condition": edited}, headers=api.headers()
    )
    assert answer.status_code == 200, answer.text
    assert api.client.delete("/v1/alert-rules/grid-cut", headers=api.headers()).status_code == 204
    third = _install(db_url, capsys)
    after = _rows(api)
    assert after["battery-low"][3]["condition"]["value"] == 30  # the user's change stays
    assert after["battery-low"][1] == 2
    assert any(
        line.startswith("kept") and "battery-low" in line and "edited" in line for line in third
    )
    assert any(line.startswith("installed") and "grid-cut" in line for line in third)
    assert {k: v for k, v in after.items() if k not in ("battery-low", "grid-cut")} == {
        k: v for k, v in installed.items() if k not in ("battery-low", "grid-cut")
    }


def test_a_pack_rule_whose_id_a_user_took_gets_another(
    api_factory: ApiFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("GRAMLINK_API_MASTER_SECRET", MASTER)
    db_url = f"sqlite:///{tmp_path / 'registry.sqlite'}"
    api = api_factory(db_url)
    mine = {
        "id": "wan-down",
        "name": "my WAN rule",
        "condition": {"type": "offline", "target": "gateway", "after": "1m"},
    }
    assert api.client.post("/v1/alert-rules", json=mine, headers=api.headers()).status_code == 201
    _install(db_url, capsys)
    rows = _rows(api)
    assert rows["wan-down"][0].startswith("wan-down-")
    kept = api.client.get("/v1/alert-rules/wan-down", headers=api.headers()).json()
    assert kept["name"] == "my WAN rule" and kept["pack_key"] is None


def test_docs_describe_every_rule_of_the_default_pack() -> None:
    text = (Path(__file__).resolve().parents[2] / "docs" / "alerts.md").read_text()
    section = text.split("## The default pack", 1)[1].split("\n## ", 1)[0]
    keys = [
        line.split("|")[1].strip().strip("`")
        for line in section.splitlines()
        if line.startswith("| `")
    ]
    assert keys == list(DEFAULT_PACK)
