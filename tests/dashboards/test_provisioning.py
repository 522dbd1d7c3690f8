"""deploy/grafana/: the provisioning files name what the dashboards and the push use."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from dashboards import datasource, push
from dashboards.board import FOLDER

PROVISIONING = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "provisioning"


def load(relative: str) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((PROVISIONING / relative).read_text())
    return data


def test_datasource_is_the_one_the_panels_name() -> None:
    [ds] = load("datasources/gramlink.yaml")["datasources"]
    assert (ds["uid"], ds["type"], ds["name"]) == (datasource.UID, datasource.TYPE, datasource.NAME)
    assert ds["jsonData"]["dbName"] == "gramlink"
    assert ds["secureJsonData"]["password"].startswith("${")  # never a password in a file
    body = push.datasource_body(push.PushSettings("http://g", "t", ds["url"]))
    assert body["jsonData"] == ds["jsonData"]  # the push and the file agree


def test_dashboard_provider_uses_the_push_folder() -> None:
    [provider] = load("dashboards/gramlink.yaml")["providers"]
    assert provider["folder"] == FOLDER and provider["folderUid"] == push.FOLDER_UID
    assert provider["type"] == "file"
