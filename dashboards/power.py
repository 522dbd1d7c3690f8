"""Power and energy across centres: solar yield against expectation, autonomy, grid cuts."""

from __future__ import annotations

from typing import Final

from grafana_foundation_sdk.builders.dashboard import Dashboard

from dashboards import panels, variables
from dashboards.board import board
from dashboards.datasource import Influx
from dashboards.queries import AUTONOMY_H, DAY, hours_per_day
from dashboards.variables import CENTRE

UID: Final = "gramlink-power"
DAILY: Final = f'GROUP BY {DAY}, "centre" fill(none)'


def dashboard() -> Dashboard:
    dash = board(
        UID,
        "GramLink / Power and energy",
        "Across the selected centres: solar yield against the clear-sky expectation, "
        "battery autonomy and hours without grid.",
        variables.place(),
        time_from="now-7d",
    )
    dash.with_panel(
        panels.bars(
            "Solar yield against clear sky, per day",
            "Each day's solar energy per centre next to the clear-sky energy at its place; "
            "cloudy days dip for every centre of a district, a centre alone low has dirty "
            "panels, a fault, or a full battery that needed no more (the charger then "
            "curtails).",
            Influx(
                f'SELECT max("energy_today_wh") FROM "power" WHERE {CENTRE} AND $timeFilter '
                f"{DAILY}",
                alias="solar $tag_centre",
            ),
            Influx(
                'SELECT integral("pv_expected_w", 1h) FROM "solar_expected" '
                f"WHERE {CENTRE} AND $timeFilter {DAILY}",
                ref_id="B",
                alias="clear sky $tag_centre",
            ),
            unit="watth",
            width=24,
        )
    )
    dash.with_panel(
        panels.series(
            "Battery autonomy",
            "Hours each battery lasts at its last hour's discharge rate (only while discharging).",
            Influx(AUTONOMY_H, alias="$tag_centre"),
            unit="h",
        )
    )
    dash.with_panel(
        panels.bars(
            "Grid-cut hours per day",
            "Hours per day without mains power, from the share of readings with no grid.",
            Influx(hours_per_day("power", "grid_present", False), alias="$tag_centre"),
            unit="h",
        )
    )
    dash.with_panel(
        panels.series(
            "Battery state of charge",
            "Charge of each centre's battery.",
            Influx(
                'SELECT mean("battery_soc_pct") FROM "power" '
                f'WHERE {CENTRE} AND $timeFilter GROUP BY time($__interval), "centre" fill(none)',
                alias="$tag_centre",
            ),
            unit="percent",
        )
    )
    return dash
