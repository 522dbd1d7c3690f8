"""Telemetry reads from InfluxDB over InfluxQL (``/query``, answered by 1.x, 2.x, 3.x).

Queries are built only from validated identifiers: the measurement comes from
the device's registered kind (``contract.metrics.measurement_for``), field names
from that kind's metrics model, the window from a checked pattern. Every value a
user sends (device, centre, time bounds) travels as a bind parameter
(``params``), never pasted into the query text. Results are bounded by
``MAX_POINTS``.

Errors: :class:`api.errors.TelemetryUnavailable` (503, retryable) when InfluxDB does
not answer or answers an error.
"""

from __future__ import annotations

import json
import re
import types
import typing
from datetime import UTC, datetime
from typing import Any, Final

import httpx

from api.errors import TelemetryUnavailable, Unprocessable
from api.schemas import Reading
from contract.metrics import METRICS_BY_KIND, DeviceKind, measurement_for
from contract.storage import TAGS

MAX_POINTS: Final = 10_000
WINDOW_RE: Final = re.compile(r"[1-9][0-9]{0,4}[smhd]")
FUNCTIONS: Final = frozenset({"mean", "min", "max", "sum", "count", "last"})


def _flatten(annotation: Any) -> set[type]:
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _flatten(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        out: set[type] = set()
        for arg in typing.get_args(annotation):
            out |= _flatten(arg)
        return out
    return {annotation} if isinstance(annotation, type) else set()


# Set on a reading the gateway stored at its receive time because the device's
# clock was implausible; ``device_ts`` is the device's own time (ms). Raw reads only.
CLOCK_FIELDS: Final = {"device_ts": False, "clock_suspect": False}


def fields_of(kind: DeviceKind) -> dict[str, bool]:
    """Field names of a kind (metrics, ``seq``, the clock-suspect pair) -> aggregatable or not."""
    out = {"seq": True, **CLOCK_FIELDS}
    for name, info in METRICS_BY_KIND[kind].model_fields.items():
        found = _flatten(info.annotation) - {type(None)}
        out[name] = bool(found) and found <= {int, float}
    return out


class TelemetryReader:
    def __init__(self, url: str, database: str, user: str, password: str, timeout: float) -> None:
        self._database = database
        self._auth = (user, password)
        self._http = httpx.Client(base_url=url, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def latest(self, centre: str, device: str, kind: DeviceKind) -> list[Reading]:
        measurement = measurement_for(kind).value
        query = (
            f'SELECT * FROM "{measurement}" WHERE "centre" = $centre AND "device" = $device '
            "ORDER BY time DESC LIMIT 1"
        )
        return self._run(query, {"centre": centre, "device": device})

    def between(
        self,
        centre: str,
        device: str,
        kind: DeviceKind,
        start_ns: int,
        end_ns: int,
        *,
        window: str | None,
        function: str,
        fields: list[str] | None,
    ) -> list[Reading]:
        known = fields_of(kind)
        wanted = fields or [n for n, numeric in known.items() if numeric or window is None]
        for name in wanted:
            if name not in known:
                raise Unprocessable(f"unknown field {name!r} for {kind.value}", field="query.field")
            if window is not None and not known[name]:
                raise Unprocessable(f"field {name!r} cannot be aggregated", field="query.field")
        if window is not None and (
            WINDOW_RE.fullmatch(window) is None or function not in FUNCTIONS
        ):
            raise Unprocessable("bad window or function", field="query.window")
        if end_ns <= start_ns:
            raise Unprocessable("end must be after start", field="query.end")
        measurement = measurement_for(kind).value
        where = '"centre" = $centre AND "device" = $device AND time >= $start AND time < $end'
        if window is None:
            columns = ", ".join(f'"{n}"' for n in wanted)
            query = f'SELECT {columns} FROM "{measurement}" WHERE {where} ORDER BY time ASC'
        else:
            columns = ", ".join(f'{function}("{n}") AS "{n}"' for n in wanted)
            query = (
                f'SELECT {columns} FROM "{measurement}" WHERE {where} '
                f"GROUP BY time({window}) fill(none)"
            )
        query += f" LIMIT {MAX_POINTS}"
        params = {"centre": centre, "device": device, "start": start_ns, "end": end_ns}
        return self._run(query, params)

    def _run(self, query: str, params: dict[str, Any]) -> list[Reading]:
        try:
            response = self._http.post(
                "/query",
                params={"db": self._database, "epoch": "ns"},
                data={"q": query, "params": json.dumps(params)},
                auth=self._auth,
            )
            body = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise TelemetryUnavailable(f"InfluxDB did not answer: {type(exc).__name__}") from exc
        if response.status_code >= 400 or "error" in body:
            raise TelemetryUnavailable(f"InfluxDB answered {response.status_code}")
        readings: list[Reading] = []
        for result in body.get("results", []):
            if "error" in result:
                raise TelemetryUnavailable(f"InfluxDB query failed: {result['error'][:200]}")
            for series in result.get("series", []):
                columns = series["columns"]
                for row in series["values"]:
                    values = dict(zip(columns, row, strict=True))
                    ns = int(values.pop("time"))
                    for tag in TAGS:
                        values.pop(tag, None)
                    readings.append(
                        Reading(
                            time_ns=ns,
                            time=datetime.fromtimestamp(ns / 1e9, UTC),
                            values=values,
                        )
                    )
        return readings
