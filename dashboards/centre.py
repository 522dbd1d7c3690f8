"""Centre: one centre's router, power, health devices and gateway, with its alerts marked.

Health panels count measurements and show device batteries only: never a patient
reference, never a measured value of a person.
"""

from __future__ import annotations

from typing import Final

from grafana_foundation_sdk.builders.dashboard import Dashboard, Row

from dashboards import panels, variables
from dashboards.board import board
from dashboards.datasource import Influx
from dashboards.queries import AUTONOMY_H, DAY
from dashboards.variables import CENTRE, DEVICE

UID: Final = "gramlink-centre"
WHERE: Final = f"WHERE {CENTRE} AND {DEVICE} AND $timeFilter"
BY_TIME: Final = 'GROUP BY time($__interval), "centre" fill(none)'
HEALTH_KINDS: Final = (
    ("systolic_mmhg", "bp_monitor"),
    ("spo2_pct", "pulse_oximeter"),
    ("body_temp_c", "thermometer"),
    ("glucose_mg_dl", "glucometer"),
    ("weight_kg", "weighing_scale"),
)


def mean(measurement: str, field: str, alias: str = "$tag_centre") -> Influx:
    return Influx(f'SELECT mean("{field}") FROM "{measurement}" {WHERE} {BY_TIME}', alias=alias)


def dashboard() -> Dashboard:
    dash = board(
        UID,
        "GramLink / Centre",
        "One centre (or a few): router, power, health devices and gateway; alerts as markers.",
        [*variables.place(), variables.device()],
    )
    dash.with_row(Row("Router"))
    dash.with_panel(
        panels.states(
            "WAN link",
            "Green while the router's internet link is up, red while it is down.",
            Influx(f'SELECT last("wan_up") FROM "router" {WHERE} {BY_TIME}', alias="$tag_centre"),
            on="up",
            off="down",
        )
    )
    dash.with_panel(
        panels.series(
            "WAN latency",
            "Round-trip time to the internet; rising latency comes before outages on 2G/3G.",
            mean("router", "wan_latency_ms"),
            unit="ms",
        )
    )
    dash.with_panel(
        panels.series(
            "Traffic",
            "Bits per second received and sent on the WAN link.",
            Influx(
                'SELECT non_negative_derivative(last("wan_rx_bytes"), 1s) * 8 FROM "router" '
                f"{WHERE} {BY_TIME}",
                alias="received $tag_centre",
            ),
            Influx(
                'SELECT non_negative_derivative(last("wan_tx_bytes"), 1s) * 8 FROM "router" '
                f"{WHERE} {BY_TIME}",
                ref_id="B",
                alias="sent $tag_centre",
            ),
            unit="bps",
        )
    )
    dash.with_panel(
        panels.series(
            "Wi-Fi clients and signal",
            "Devices on the centre's Wi-Fi, and the uplink signal strength (dBm, right).",
            mean("router", "wifi_clients", "clients $tag_centre"),
            Influx(
                f'SELECT mean("rssi_dbm") FROM "router" {WHERE} {BY_TIME}',
                ref_id="B",
                alias="signal $tag_centre",
            ),
            right="^signal ",
        )
    )
    dash.with_row(Row("Power"))
    dash.with_panel(
        panels.series(
            "Solar power against clear sky",
            "The panels' output and what a clear sky would give at this place and hour; "
            "far below on a sunny day means dirty or shaded panels or a fault.",
            mean("power", "pv_power_w", "solar $tag_centre"),
            Influx(
                'SELECT mean("pv_expected_w") FROM "solar_expected" '
                f"WHERE {CENTRE} AND $timeFilter {BY_TIME}",
                ref_id="B",
                alias="clear sky $tag_centre",
            ),
            unit="watt",
        )
    )
    dash.with_panel(
        panels.bars(
            "Solar energy per day against clear sky",
            "Energy the panels gave each day, and the clear-sky day at this place.",
            Influx(
                f'SELECT max("energy_today_wh") FROM "power" {WHERE} '
                f'GROUP BY {DAY}, "centre" fill(none)',
                alias="solar $tag_centre",
            ),
            Influx(
                'SELECT integral("pv_expected_w", 1h) FROM "solar_expected" '
                f'WHERE {CENTRE} AND $timeFilter GROUP BY {DAY}, "centre" fill(none)',
                ref_id="B",
                alias="clear sky $tag_centre",
            ),
            unit="watth",
        )
    )
    dash.with_panel(
        panels.series(
            "Battery",
            "State of charge (%) and battery voltage (right); a fast fall at night means a "
            "worn battery.",
            mean("power", "battery_soc_pct", "charge $tag_centre"),
            Influx(
                f'SELECT mean("battery_voltage_v") FROM "power" {WHERE} {BY_TIME}',
                ref_id="B",
                alias="voltage $tag_centre",
            ),
            right="^voltage ",
        )
    )
    dash.with_panel(
        panels.series(
            "Load",
            "Power the centre draws (PCs, router, lights).",
            mean("power", "load_power_w"),
            unit="watt",
        )
    )
    dash.with_panel(
        panels.states(
            "Grid",
            "Green while mains power is present, red during a power cut.",
            Influx(
                f'SELECT last("grid_present") FROM "power" {WHERE} {BY_TIME}',
                alias="$tag_centre",
            ),
            on="present",
            off="cut",
        )
    )
    dash.with_row(Row("Health devices"))
    counts = ", ".join(f'count("{field}") AS "{kind}"' for field, kind in HEALTH_KINDS)
    dash.with_panel(
        panels.bars(
            "Measurements per day, by device kind",
            "How many measurements each kind of device took each day (no patient data).",
            Influx(f'SELECT {counts} FROM "health" {WHERE} GROUP BY {DAY} fill(none)'),
        )
    )
    dash.with_panel(
        panels.series(
            "Health device batteries",
            "Battery of each health device; replace below 20 %.",
            Influx(
                f'SELECT last("battery_pct") FROM "health" {WHERE} '
                'GROUP BY time($__interval), "device" fill(none)',
                alias="$tag_device",
            ),
            unit="percent",
        )
    )
    dash.with_row(Row("Gateway"))
    dash.with_panel(
        panels.series(
            "Queue",
            "Readings waiting in the gateway's store, and the age of the oldest (right).",
            mean("gateway", "queue_depth", "queued $tag_centre"),
            Influx(
                f'SELECT max("queue_oldest_s") FROM "gateway" {WHERE} {BY_TIME}',
                ref_id="B",
                alias="oldest (s) $tag_centre",
            ),
            right="^oldest ",
        )
    )
    dash.with_panel(
        panels.series(
            "Hours of autonomy",
            "How long the battery lasts at the discharge rate of the last hour.",
            Influx(AUTONOMY_H, alias="$tag_centre"),
            unit="h",
            width=8,
        )
    )
    dash.with_panel(
        panels.bars(
            "Evictions",
            "Readings the gateway dropped in each interval because its store was full "
            "(should stay 0).",
            Influx(
                f'SELECT spread("dropped_total") FROM "gateway" {WHERE} {BY_TIME}',
                alias="$tag_centre",
            ),
            width=8,
        )
    )
    dash.with_panel(
        panels.series(
            "Clock-suspect readings",
            "Readings the gateway flagged for an implausible device time (a device without a "
            "real-time clock, or one far ahead): stored at the gateway's receive time with "
            "the device's own time kept (docs/gateway.md, clock sanity). A rising line: "
            "set that device's clock.",
            Influx(
                'SELECT max("clock_suspect_total") FROM "gateway" '
                f"WHERE {CENTRE} AND $timeFilter {BY_TIME}",
                alias="$tag_centre",
            ),
            width=8,
        )
    )
    return dash
