"""What Grafana does to an InfluxQL query before it sends it, for the query test.

- ``$timeFilter`` → ``time >= {from}ms and time <= {to}ms``;
- ``$__interval`` → the time range over the panel's data points (1000: a panel
  about 1000 px wide), rounded the way Grafana's ``rangeutil.roundInterval``
  rounds it (``1m``, ``5m``...); ``$__interval_ms`` the same in milliseconds;
- a multi-value or "All" variable → ``(v1|v2|...)``, each value regex-escaped, a
  single value → the escaped value (InfluxDB datasource ``interpolateQueryExpr``);
- ``$name`` and ``${name}`` both.
Variables are resolved in dashboard order, each query with the values of the
ones before it, "All" selected (what a technician sees first).
"""

from __future__ import annotations

import re
from typing import Any, Final

import httpx

# (upper bound ms, interval) of Grafana's roundInterval, smallest first
ROUNDING: Final = (
    (1500, "1s"),
    (3500, "2s"),
    (7500, "5s"),
    (12500, "10s"),
    (17500, "15s"),
    (25000, "20s"),
    (45000, "30s"),
    (90000, "1m"),
    (210000, "2m"),
    (450000, "5m"),
    (750000, "10m"),
    (1050000, "15m"),
    (1500000, "20m"),
    (2700000, "30m"),
    (5400000, "1h"),
    (9000000, "2h"),
    (16200000, "3h"),
    (32400000, "6h"),
    (86400000, "12h"),
)
REGEX_SPECIAL: Final = re.compile(r"([\\^$.|?*+()\[\]{}/])")


def escape_regex(value: str) -> str:
    return REGEX_SPECIAL.sub(r"\\\1", value)


def round_interval(ms: float) -> str:
    for bound, text in ROUNDING:
        if ms < bound:
            return text
    return "1d"


def multi(values: list[str]) -> str:
    escaped = [escape_regex(v) for v in values]
    return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"


def substitute(query: str, values: dict[str, list[str]], from_ms: int, to_ms: int) -> str:
    interval = round_interval((to_ms - from_ms) / 1000)  # 1000: the panels' data points
    query = query.replace("$timeFilter", f"time >= {from_ms}ms and time <= {to_ms}ms")
    unit = {"s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}[interval[-1]]
    query = query.replace("$__interval_ms", str(int(interval[:-1]) * unit))
    query = query.replace("$__interval", interval)
    for name in sorted(values, key=len, reverse=True):  # $centre before a shorter prefix
        text = multi(values[name])
        query = query.replace("${" + name + "}", text).replace("$" + name, text)
    return query


class Influx:
    def __init__(self, url: str, database: str, user: str, password: str) -> None:
        self.url, self.database, self.auth = url, database, (user, password)

    def query(self, q: str) -> list[dict[str, Any]]:
        """The series InfluxDB answers; an error answer raises with its message."""
        answer = httpx.get(
            f"{self.url}/query",
            params={"db": self.database, "q": q, "epoch": "ms"},
            auth=self.auth,
            timeout=30,
        )
        body = answer.json()
        if answer.status_code != 200 or "error" in body:
            raise AssertionError(body.get("error", answer.text))
        series: list[dict[str, Any]] = []
        for result in body["results"]:
            if "error" in result:
                raise AssertionError(result["error"])
            series.extend(result.get("series", []))
        return series


def has_values(series: list[dict[str, Any]]) -> bool:
    """At least one series with a non-null value in a column other than time (a field
    that does not exist gives only nulls, or no series at all)."""
    for s in series:
        columns = s["columns"]
        for row in s.get("values", []):
            if any(v is not None for c, v in zip(columns, row, strict=True) if c != "time"):
                return True
    return False


def resolve_variables(
    influx: Influx, variables: list[dict[str, Any]], from_ms: int, to_ms: int
) -> dict[str, list[str]]:
    """Every variable's options with "All" selected, in order; a variable that lists
    nothing raises with its name."""
    values: dict[str, list[str]] = {}
    for variable in variables:
        q = substitute(variable["query"], values, from_ms, to_ms)
        options = sorted({str(row[1]) for s in influx.query(q) for row in s.get("values", [])})
        if not options:
            raise AssertionError(f"variable ${variable['name']} lists nothing: {q}")
        values[variable["name"]] = options
    return values
