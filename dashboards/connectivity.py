"""Connectivity: WAN uptime per centre and day, latency percentiles, uplink backlog age."""

from __future__ import annotations

from typing import Final

from grafana_foundation_sdk.builders.dashboard import Dashboard

from dashboards import panels, variables
from dashboards.board import board
from dashboards.datasource import Influx
from dashboards.queries import hours_per_day
from dashboards.variables import CENTRE

UID: Final = "gramlink-connectivity"
BY_TIME: Final = 'GROUP BY time($__interval), "centre" fill(none)'


def dashboard() -> Dashboard:
    dash = board(
        UID,
        "GramLink / Connectivity",
        "WAN uptime per centre per day, latency percentiles and how old the uplink backlog is.",
        variables.place(),
        time_from="now-7d",
    )
    dash.with_panel(
        panels.bars(
            "WAN uptime per day",
            "Hours per day the router's internet link was up (24 = all day).",
            Influx(hours_per_day("router", "wan_up", True), alias="$tag_centre"),
            unit="h",
            width=24,
        )
    )
    for ref_id, pct in (("A", 50), ("B", 95), ("C", 99)):
        dash.with_panel(
            panels.series(
                f"WAN latency p{pct}",
                f"{pct} % of the router's latency probes were faster than this.",
                Influx(
                    f'SELECT percentile("wan_latency_ms", {pct}) FROM "router" '
                    f"WHERE {CENTRE} AND $timeFilter {BY_TIME}",
                    ref_id=ref_id,
                    alias="$tag_centre",
                ),
                unit="ms",
                width=8,
            )
        )
    dash.with_panel(
        panels.series(
            "Uplink backlog age",
            "Age of the oldest reading waiting at each centre's gateway; it grows while the "
            "uplink is down and falls back when the backlog is sent.",
            Influx(
                f'SELECT max("queue_oldest_s") FROM "gateway" WHERE {CENTRE} AND $timeFilter '
                f"{BY_TIME}",
                alias="$tag_centre",
            ),
            unit="s",
        )
    )
    dash.with_panel(
        panels.series(
            "Sent, not yet stored",
            "Readings sent by a gateway that no storage receipt has named yet, and the oldest's "
            "wait; these grow while ingest or InfluxDB is down.",
            Influx(
                f'SELECT max("unreceipted") FROM "gateway" WHERE {CENTRE} AND $timeFilter '
                f"{BY_TIME}",
                alias="readings $tag_centre",
            ),
        )
    )
    return dash
