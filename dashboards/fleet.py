"""Fleet overview: which centres are up, where, what is alerting, what runs out first."""

from __future__ import annotations

from typing import Final

from grafana_foundation_sdk.builders.dashboard import Dashboard

from dashboards import panels, variables
from dashboards.board import board
from dashboards.datasource import Influx
from dashboards.queries import AUTONOMY_H, LATEST_ALERTS, LATEST_CENTRES, OPEN
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
            "Open alerts, by severity",
            "Alerts firing or acknowledged now, per severity (the latest state of each rule "
            "on each device).",
            Influx(
                f'SELECT count("count") FROM ({LATEST_ALERTS}) WHERE {OPEN} GROUP BY "severity"',
                alias="$tag_severity",
            ),
            steps=((None, "orange"),),
        )
    )
    dash.with_panel(
        panels.single(
            "Open clinical alerts",
            "Open alerts raised by a patient measurement (clinical rules): a patient may need "
            "a call back.",
            Influx(
                f'SELECT count("count") FROM ({LATEST_ALERTS}) WHERE {OPEN} AND "clinical" = true'
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
            "Open clinical alerts, by centre",
            "Which rule is open on which device and since when, with the alert id to look up "
            "in the API; open the Centre dashboard for the device's readings.",
            Influx(
                f'SELECT "id", "state", "value" FROM ({LATEST_ALERTS}) '
                f'WHERE {OPEN} AND "clinical" = true '
                'GROUP BY "centre", "rule", "device", "severity"'
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
