"""Pipeline: the central ingest workers and the gateways' queues feeding them."""

from __future__ import annotations

from typing import Final

from grafana_foundation_sdk.builders.dashboard import Dashboard

from dashboards import panels, variables
from dashboards.board import board
from dashboards.datasource import Influx
from dashboards.variables import CENTRE

UID: Final = "gramlink-pipeline"
BY_WORKER: Final = 'WHERE $timeFilter GROUP BY time($__interval), "worker" fill(none)'


def rate(field: str) -> str:
    return f'SELECT non_negative_derivative(last("{field}"), 1s) FROM "pipeline" {BY_WORKER}'


def dashboard() -> Dashboard:
    dash = board(
        UID,
        "GramLink / Pipeline",
        "Ingest workers (the pipeline measurement, one point per worker every 10 s), "
        "quarantined readings and the gateways' queues.",
        variables.place(),
        time_from="now-1h",
        annotations=False,
    )
    dash.with_panel(
        panels.series(
            "Ingest rate",
            "Readings decoded and points written per second, per worker.",
            Influx(rate("readings"), alias="readings $tag_worker"),
            Influx(rate("points_written"), ref_id="B", alias="points $tag_worker"),
            unit="reqps",
        )
    )
    dash.with_panel(
        panels.series(
            "Write latency",
            "Mean time of one InfluxDB write, per worker: slow storage shows here first.",
            Influx(
                'SELECT non_negative_derivative(last("write_seconds_sum")) / '
                'non_negative_derivative(last("writes")) FROM "pipeline" '
                f"{BY_WORKER}",
                alias="$tag_worker",
            ),
            unit="s",
        )
    )
    dash.with_panel(
        panels.bars(
            "Quarantined readings, by reason",
            "Readings refused and kept aside, per reason (docs/ingest.md#quarantine).",
            Influx(
                'SELECT count("detail") FROM "quarantine" WHERE $timeFilter '
                'GROUP BY time($__interval), "reason" fill(none)',
                alias="$tag_reason",
            ),
        )
    )
    dash.with_panel(
        panels.series(
            "Write retries and unacknowledged",
            "Writes retried per second (InfluxDB slow or down) and messages held "
            "unacknowledged meanwhile (right).",
            Influx(rate("retries"), alias="retries $tag_worker"),
            Influx(
                f'SELECT max("unacked") FROM "pipeline" {BY_WORKER}',
                ref_id="B",
                alias="unacked $tag_worker",
            ),
            right="^unacked ",
        )
    )
    dash.with_panel(
        panels.series(
            "Gateway queues",
            "Readings waiting at each selected centre's gateway.",
            Influx(
                f'SELECT max("queue_depth") FROM "gateway" WHERE {CENTRE} AND $timeFilter '
                'GROUP BY time($__interval), "centre" fill(none)',
                alias="$tag_centre",
            ),
        )
    )
    dash.with_panel(
        panels.series(
            "Seconds since last message",
            "Per worker: a worker that stopped receiving shows a rising line.",
            Influx(
                f'SELECT max("seconds_since_last_message") FROM "pipeline" {BY_WORKER}',
                alias="$tag_worker",
            ),
            unit="s",
        )
    )
    return dash
