"""Every panel query, annotation and template-variable query of every dashboard, with
Grafana's substitutions, against a day of simulated data stored through the real path.

A query InfluxDB refuses, one that returns no series, or one whose columns are all
empty (a field that does not exist) fails with the dashboard's and the panel's title;
so does a legend naming a tag (``$tag_centre``) that the series do not carry.

Time range: the simulated days for the dashboards of readings; the Pipeline
dashboard's own default (the last hour, as a technician opens it), since its
figures are written in real time while the days stream in (a few seconds).
"""

from __future__ import annotations

import re
import time
from typing import Any

import pytest

from dashboards import build, checks, pipeline
from tests.dashboards.conftest import Day
from tests.dashboards.grafana import Influx, has_values, resolve_variables, substitute


def client(day: Day) -> Influx:
    i = day.influx
    return Influx(i.url, i.database, i.admin_user, i.admin_password)


def queries(data: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(what, query, legend alias) of every panel target and annotation."""
    found = []
    for panel in checks.panels(data):
        for target in panel.get("targets", []):
            what = f"panel {panel['title']!r} ({target['refId']})"
            found.append((what, target["query"], target.get("alias", "")))
    for annotation in data.get("annotations", {}).get("list", []):
        if "query" in annotation:
            found.append((f"annotation {annotation['name']!r}", annotation["query"], ""))
    return found


def missing_legend_tags(series: list[dict[str, Any]], alias: str) -> set[str]:
    """Tags the legend names (``$tag_centre``) that a returned series does not carry."""
    wanted = set(re.findall(r"\$tag_(\w+)", alias))
    return {tag for s in series for tag in wanted - set(s.get("tags") or {})}


def time_range(day: Day, data: dict[str, Any]) -> tuple[int, int]:
    if data["uid"] != pipeline.UID:
        return day.from_ms, day.to_ms
    hours = int(data["time"]["from"].removeprefix("now-").removesuffix("h"))
    now = int(time.time() * 1000)
    return now - hours * 3_600_000, now


@pytest.mark.parametrize("name", list(build.DASHBOARDS))
def test_every_query_returns_series(dashboard_day: Day, name: str) -> None:
    data = build.model(name)
    influx = client(dashboard_day)
    from_ms, to_ms = time_range(dashboard_day, data)
    values = resolve_variables(influx, data["templating"]["list"], from_ms, to_ms)
    assert set(values["centre"]) == set(dashboard_day.centres)
    failures = []
    for what, query, alias in queries(data):
        q = substitute(query, values, from_ms, to_ms)
        try:
            series = influx.query(q)
        except AssertionError as exc:
            failures.append(f"{data['title']}: {what}: InfluxDB refused it: {exc}\n    {q}")
            continue
        if not has_values(series):
            failures.append(f"{data['title']}: {what}: no series with values\n    {q}")
        elif missing := missing_legend_tags(series, alias):
            failures.append(f"{data['title']}: {what}: legend names tag {missing} the series lack")
    assert failures == [], "\n".join(failures)


def test_variables_chain_district_to_its_centres(dashboard_day: Day) -> None:
    data = build.model("centre")
    variables = data["templating"]["list"]
    influx = client(dashboard_day)
    f, t = dashboard_day.from_ms, dashboard_day.to_ms

    def options(name: str, chosen: dict[str, list[str]]) -> list[str]:
        query = next(v["query"] for v in variables if v["name"] == name)
        series = influx.query(substitute(query, chosen, f, t))
        return sorted(str(row[1]) for s in series for row in s["values"])

    state = ["Jammu and Kashmir"]
    assert options("district", {"state": state}) == ["Kathua", "Samba"]
    assert options("centre", {"state": state, "district": ["Samba"]}) == ["hub", "spoke1"]
    assert options("centre", {"state": state, "district": ["Kathua"]}) == ["spoke5"]
    assert options("centre", {"state": ["Punjab"], "district": ["Samba"]}) == []
    devices = options("device", {"centre": ["spoke5"]})
    assert devices and all(d.startswith("spoke5") or d == "probe" for d in devices)


def panel_series(day: Day, dashboard: str, title: str) -> list[dict[str, Any]]:
    data = build.model(dashboard)
    influx = client(day)
    values = resolve_variables(influx, data["templating"]["list"], day.from_ms, day.to_ms)
    panel = next(p for p in checks.panels(data) if p.get("title") == title)
    query = substitute(panel["targets"][0]["query"], values, day.from_ms, day.to_ms)
    return influx.query(query)


def test_open_alerts_are_the_subjects_whose_latest_state_is_open(dashboard_day: Day) -> None:
    """The fixture's alerts, written as the engine writes them: battery-low and
    device-silent (warning; an absence has no value) and bp-high (critical, clinical)
    firing; spo2-low (critical, clinical) fired and then resolved."""
    by_severity = {
        s["tags"]["severity"]: s["values"][0][1]
        for s in panel_series(dashboard_day, "fleet", "Open alerts, by severity")
    }
    assert by_severity == {"warning": 2, "critical": 1}
    [clinical] = panel_series(dashboard_day, "fleet", "Open clinical alerts")
    assert clinical["values"][0][1] == 1
    [row] = panel_series(dashboard_day, "fleet", "Open clinical alerts, by centre")
    assert row["tags"]["rule"] == "bp-high" and row["tags"]["centre"] == "hub"
