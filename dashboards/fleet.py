"""Fleet overview: which centres are up, where, what is alerting, what runs out first."""

from __future__ import annotations

from typing import Final

from grafana_foundation_sdk.builders.dashboard import Dashboard

from dashboards import panels, variables
from dashboards.board import board
from dashboards.datasource import Influx
from dashboards.queries import AUTONOMY_H, LATEST_CENTRES
from dashboards.variables import CENTRE

UID: Final = "gramlink-fleet"


def dashboard() -> Dashboard:
    dash = board(
        UID,
        "GramLink / Fleet overview",
        "Centres online and offline, where they are, open alerts, batteries and backlogs.",
        variables.place(),
    )
    dash.with_panel(
        panels.single(
            "Centres online",
            "Centres whose gateway is connected to the central broker now.",
            Influx(f'SELECT sum("online") FROM ({LATEST_CENTRES})'),
        )
    )
    dash.with_panel(
        panels.single(
            "Centres offline",
            "Centres whose gateway is not connected: readings wait in its queue.",
            Influx(f'SELECT count("online") - sum("online") FROM ({LATEST_CENTRES})'),
            steps=((None, "green"), (1, "red")),
        )
    )
    dash.with_panel(
        panels.gauges(
            "Alerts fired, by severity",
            "Alerts that started firing in the time range, per severity.",
            Influx(
                'SELECT count("value") FROM "alerts" '
                f"WHERE \"state\" = 'firing' AND {CENTRE} AND $timeFilter "
                'GROUP BY "severity"',
                alias="$tag_severity",
            ),
            steps=((None, "orange"),),
        )
    )
    dash.with_panel(
        panels.single(
            "Clinical alerts",
            "Alerts raised by a patient measurement (clinical rules) in the time range.",
            Influx(
                'SELECT count("value") FROM "alerts" '
                f'WHERE "state" = \'firing\' AND "clinical" = true AND {CENTRE} '
                "AND $timeFilter"
            ),
            steps=((None, "green"), (1, "red")),
        )
    )
    dash.with_panel(
        panels.map_of_centres(
            "Centres",
            "Each centre at its place: green online, red offline; hover for name and district.",
            Influx(
                'SELECT last("latitude") AS "latitude", last("longitude") AS "longitude", '
                'last("online") AS "online", last("name") AS "name", '
                'last("village") AS "village" FROM "centres" '
                f'WHERE {CENTRE} AND $timeFilter GROUP BY "centre", "district", "hub"'
            ).table(),
        )
    )
    dash.with_panel(
        panels.grid(
            "Clinical alerts, latest",
            "Which rule fired on which device; open the Centre dashboard for the readings.",
            Influx(
                'SELECT "rule", "severity", "device", "value", "id" FROM "alerts" '
                f'WHERE "state" = \'firing\' AND "clinical" = true AND {CENTRE} '
                'AND $timeFilter GROUP BY "centre"'
            ).table(),
        )
    )
    dash.with_panel(
        panels.grid(
            "Lowest battery autonomy",
            "Hours each centre's battery lasts at its last hour's discharge rate; lowest first.",
            Influx(
                f'SELECT last("autonomy_h") AS "autonomy_h" FROM ({AUTONOMY_H}) GROUP BY "centre"'
            ).table(),
            sort_by="autonomy_h",
            unit="h",
        )
    )
    dash.with_panel(
        panels.grid(
            "Oldest gateway backlog",
            "How long the oldest reading has waited in each centre's gateway queue, and the "
            "oldest reading sent but not yet stored; oldest first.",
            Influx(
                'SELECT last("queue_oldest_s") AS "queue_oldest_s", '
                'last("unreceipted_oldest_s") AS "unreceipted_oldest_s", '
                'last("queue_depth") AS "queue_depth" FROM "gateway" '
                f'WHERE {CENTRE} AND $timeFilter GROUP BY "centre"'
            ).table(),
            sort_by="queue_oldest_s",
            descending=True,
            unit="s",
        )
    )
    return dash
