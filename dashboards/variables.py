"""The template variables every dashboard shares: ``$state`` → ``$district`` → ``$centre`` →
``$device``, each multi-value with "All", each listing only what its parent selects.

State, district and centre come from the ``centres`` measurement that the API writes
(registry facts: one point per centre); devices from the readings themselves.
Panels filter on ``$centre`` (and ``$device``) only: the centre list already holds
just the centres of the selected states and districts.
"""

from __future__ import annotations

from typing import Final

from grafana_foundation_sdk.builders.dashboard import QueryVariable
from grafana_foundation_sdk.models.dashboard import VariableRefresh, VariableSort

from dashboards import datasource

CENTRES_MEASUREMENT: Final = "centres"
READING_MEASUREMENTS: Final = "/^(router|power|health|gateway)$/"

STATE_QUERY: Final = f'SHOW TAG VALUES FROM "{CENTRES_MEASUREMENT}" WITH KEY = "state"'
DISTRICT_QUERY: Final = (
    f'SHOW TAG VALUES FROM "{CENTRES_MEASUREMENT}" WITH KEY = "district" '
    'WHERE "state" =~ /^$state$/'
)
CENTRE_QUERY: Final = (
    f'SHOW TAG VALUES FROM "{CENTRES_MEASUREMENT}" WITH KEY = "centre" '
    'WHERE "state" =~ /^$state$/ AND "district" =~ /^$district$/'
)
DEVICE_QUERY: Final = (
    f'SHOW TAG VALUES FROM {READING_MEASUREMENTS} WITH KEY = "device" WHERE "centre" =~ /^$centre$/'
)

# InfluxQL conditions the panels use.
CENTRE: Final = '"centre" =~ /^$centre$/'
DEVICE: Final = '"device" =~ /^$device$/'


def _variable(name: str, label: str, query: str) -> QueryVariable:
    return (
        QueryVariable(name)
        .label(label)
        .datasource(datasource.ref())
        .query(query)
        .multi(True)
        .include_all(True)
        .refresh(VariableRefresh.ON_DASHBOARD_LOAD)
        .sort(VariableSort.ALPHABETICAL_CASE_INSENSITIVE_ASC)
    )


def state() -> QueryVariable:
    return _variable("state", "State", STATE_QUERY)


def district() -> QueryVariable:
    return _variable("district", "District", DISTRICT_QUERY)


def centre() -> QueryVariable:
    return _variable("centre", "Centre", CENTRE_QUERY)


def device() -> QueryVariable:
    return _variable("device", "Device", DEVICE_QUERY)


def place() -> list[QueryVariable]:
    """State, district and centre: the chain every dashboard starts with."""
    return [state(), district(), centre()]
