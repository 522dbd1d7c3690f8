"""``gramlink dashboards push`` against a recording stand-in for Grafana's HTTP API."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from dashboards import build, datasource
from dashboards.push import FOLDER_UID
from gramlink.cli import main
from gramlink.services.process import free_port
from tests.dashboards.fake_grafana import EDITOR, VIEWER, FakeGrafanaServer

NAMES = list(build.DASHBOARDS)


@pytest.fixture
def grafana() -> Iterator[FakeGrafanaServer]:
    with FakeGrafanaServer() as server:
        yield server


def push(url: str, token: str = EDITOR, password: str = "read-only-secret") -> list[str]:
    return [
        "dashboards",
        "push",
        "--grafana-url",
        url,
        "--token",
        token,
        "--influx-url",
        "http://influx.example:8086",
        "--influx-password",
        password,
        "--timeout-s",
        "5",
    ]


def test_first_push_creates_everything_second_changes_nothing(
    grafana: FakeGrafanaServer, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(push(grafana.url)) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2 + len(NAMES)
    assert all(line.startswith("created") for line in out), out
    uids = [build.model(n)["uid"] for n in NAMES]
    expected = [
        ("GET", f"/api/datasources/uid/{datasource.UID}"),
        ("POST", "/api/datasources"),
        ("GET", f"/api/folders/{FOLDER_UID}"),
        ("POST", "/api/folders"),
    ]
    for uid in uids:
        expected += [("GET", f"/api/dashboards/uid/{uid}"), ("POST", "/api/dashboards/db")]
    g = grafana.grafana
    assert g.calls() == expected
    assert {r.authorization for r in g.requests} == {f"Bearer {EDITOR}"}
    ds = g.datasources[datasource.UID]
    assert ds["type"] == "influxdb" and ds["url"] == "http://influx.example:8086"
    assert ds["jsonData"]["dbName"] == "gramlink"
    assert ds["secureJsonData"] == {"password": "read-only-secret"}
    for name in NAMES:
        stored = g.dashboards[build.model(name)["uid"]]
        assert stored["meta"]["folderUid"] == FOLDER_UID
        assert {k: v for k, v in stored["dashboard"].items() if k not in ("id", "version")} == (
            build.model(name)
        )

    g.requests.clear()
    assert main(push(grafana.url)) == 0
    again = capsys.readouterr().out.splitlines()
    assert all(line.startswith("left alone") for line in again), again
    assert {method for method, _ in g.calls()} == {"GET"}  # nothing written


def test_a_changed_dashboard_is_updated_with_its_version(
    grafana: FakeGrafanaServer, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(push(grafana.url)) == 0
    capsys.readouterr()
    g = grafana.grafana
    uid = build.model("centre")["uid"]
    # Someone edits the Centre dashboard in Grafana and saves it (version 2).
    stored = g.dashboards[uid]
    stored["dashboard"]["title"] = "Centre (edited by hand)"
    stored["dashboard"]["version"] = stored["meta"]["version"] = 2
    g.requests.clear()
    assert main(push(grafana.url)) == 0
    out = capsys.readouterr().out
    assert f"changed    dashboard GramLink / Centre ({uid}, version 2 -> 3)" in out
    writes = [r for r in g.requests if r.method != "GET"]
    assert [(r.method, r.path) for r in writes] == [("POST", "/api/dashboards/db")]
    body = writes[0].body
    assert body["dashboard"]["version"] == 2 and body["overwrite"] is False
    assert g.dashboards[uid]["dashboard"]["title"] == "GramLink / Centre"
    assert out.count("left alone") == 1 + len(NAMES)  # datasource, folder, the other four


def test_a_save_in_grafana_during_the_push_is_a_version_conflict(
    grafana: FakeGrafanaServer, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(push(grafana.url)) == 0
    g = grafana.grafana
    uid = build.model("fleet")["uid"]
    g.dashboards[uid]["dashboard"]["title"] = "edited"
    g.someone_saves_before_next_write = True
    capsys.readouterr()
    assert main(push(grafana.url)) == 1
    err = capsys.readouterr().err
    assert "dashboard fleet: changed in Grafana since it was read (412" in err
    assert g.dashboards[uid]["dashboard"]["title"] == "edited"  # their change is kept


def test_a_bad_token_and_a_read_only_token_are_refused_clearly(
    grafana: FakeGrafanaServer, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(push(grafana.url, token="wrong")) == 4
    err = capsys.readouterr().err
    assert "Grafana refused the token (401" in err and "GRAMLINK_GRAFANA_TOKEN" in err
    assert main(push(grafana.url, token=VIEWER)) == 4
    err = capsys.readouterr().err
    assert "datasource: Grafana refused the token (403" in err
    assert grafana.grafana.datasources == {}


def test_an_unreachable_grafana_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    assert main(push(url)) == 3
    err = capsys.readouterr().err
    assert f"cannot reach Grafana at {url}" in err


def test_a_datasource_with_our_name_and_another_uid_is_named(
    grafana: FakeGrafanaServer, capsys: pytest.CaptureFixture[str]
) -> None:
    other = {"uid": "hand-made", "name": datasource.NAME, "type": "influxdb", "id": 7, "version": 1}
    grafana.grafana.datasources["hand-made"] = other
    assert main(push(grafana.url)) == 1
    err = capsys.readouterr().err
    assert f"a datasource named {datasource.NAME!r} with another uid" in err
    assert "rename or delete it" in err
