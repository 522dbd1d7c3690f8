"""InfluxQL shared by several dashboards (kept here so two panels never disagree).

Storage: ``router``, ``power``, ``health``, ``gateway`` readings (tags ``centre``,
``device``, ``model``; fields the metrics, ``contract.metrics``), ``quarantine``
(ingest's refusals, tag ``reason``), ``pipeline`` (one point per ingest worker
every 10 s, tag ``worker``), ``alerts`` (the alert engine: tags ``rule``,
``severity``, ``centre``, ``device``, ``state``), ``centres`` (the API: registry
facts, one point per centre), ``solar_expected`` (the API: the clear-sky PV power
of each centre, hourly).
"""

from __future__ import annotations

from typing import Final

from dashboards.variables import CENTRE

# A day as the centres live it: midnight India Standard Time (UTC+5:30), when the
# power unit's ``energy_today_wh`` restarts. Change it for a fleet in another zone.
DAY: Final = "time(1d, -5h30m)"

# Hours until the battery is empty at the rate of the last hour (only while it
# discharges): state of charge / -(change per hour), per centre and hour.
AUTONOMY_H: Final = (
    'SELECT "soc" / (0 - "rate") AS "autonomy_h" FROM ('
    'SELECT mean("battery_soc_pct") AS "soc", '
    'derivative(mean("battery_soc_pct"), 1h) AS "rate" FROM "power" '
    f'WHERE {CENTRE} AND $timeFilter GROUP BY time(1h), "centre") '
    'WHERE "rate" < 0 GROUP BY "centre"'
)


# The share of a day a boolean field was true: readings that say true over all
# readings (both counted on one field so a device that reports less often still
# weighs right), as hours of the day.
def hours_per_day(measurement: str, field: str, value: bool) -> str:
    flag = "true" if value else "false"
    return (
        f'SELECT 24 * count("hit") / count("all") FROM '
        f'(SELECT "seq" AS "hit" FROM "{measurement}" '
        f'WHERE "{field}" = {flag} AND {CENTRE} AND $timeFilter), '
        f'(SELECT "seq" AS "all" FROM "{measurement}" '
        f'WHERE ("{field}" = true OR "{field}" = false) AND {CENTRE} AND $timeFilter) '
        f'WHERE $timeFilter GROUP BY {DAY}, "centre" fill(none)'
    )


LATEST_CENTRES: Final = (
    'SELECT last("online") AS "online" FROM "centres" '
    f'WHERE {CENTRE} AND $timeFilter GROUP BY "centre"'
)


# The latest point of every alert subject (rule, centre, device) of the last 30
# days, with its state: the alert engine writes a point at each transition
# (tags ``rule``, ``severity``, ``centre``, ``device``, ``state``), so a subject
# whose latest point is ``firing`` or ``acknowledged`` has an open alert. ``count`` is
# in every point (``value`` is not: absence and offline alerts have none). An
# alert still open after 30 days without a new point drops off these panels.
LATEST_ALERTS: Final = (
    'SELECT last("count") AS "count", "value", "state", "clinical", "id" FROM "alerts" '
    f"WHERE {CENTRE} AND time > now() - 30d "
    'GROUP BY "rule", "centre", "device", "severity"'
)
OPEN: Final = "(\"state\" = 'firing' OR \"state\" = 'acknowledged')"
