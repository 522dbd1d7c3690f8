"""The one InfluxDB datasource every panel reads, and an InfluxQL query target for the SDK.

The Grafana Foundation SDK ships no InfluxDB query type, so :class:`InfluxQuery`
is the raw-InfluxQL target Grafana's InfluxDB datasource stores
(``{"query": ..., "rawQuery": true, "resultFormat": ...}``); the SDK keeps such a
target as it is when it reads a dashboard back.
"""

from __future__ import annotations

from typing import Any, Final, Literal, Self

from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.models.dashboard import DataSourceRef

UID: Final = "gramlink-influxdb"
TYPE: Final = "influxdb"
NAME: Final = "GramLink InfluxDB"

ResultFormat = Literal["time_series", "table"]


def ref() -> DataSourceRef:
    return DataSourceRef(type_val=TYPE, uid=UID)


class InfluxQuery(cogvariants.Dataquery):
    """A raw InfluxQL query target (Grafana's InfluxDB datasource, InfluxQL mode)."""

    def __init__(
        self, query: str, ref_id: str, result_format: ResultFormat, alias: str | None
    ) -> None:
        self.query = query
        self.ref_id = ref_id
        self.result_format = result_format
        self.alias = alias

    def to_json(self) -> dict[str, object]:
        payload: dict[str, object] = {
            "datasource": {"type": TYPE, "uid": UID},
            "query": self.query,
            "rawQuery": True,
            "refId": self.ref_id,
            "resultFormat": self.result_format,
        }
        if self.alias is not None:
            payload["alias"] = self.alias
        return payload

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        return cls(data["query"], data["refId"], data["resultFormat"], data.get("alias"))


class Influx(cogbuilder.Builder[cogvariants.Dataquery]):
    """Builder of an :class:`InfluxQuery` (``Influx("SELECT ...").table()``)."""

    def __init__(self, query: str, ref_id: str = "A", alias: str | None = None) -> None:
        self._query = InfluxQuery(" ".join(query.split()), ref_id, "time_series", alias)

    def table(self) -> Self:
        self._query.result_format = "table"
        return self

    def build(self) -> cogvariants.Dataquery:
        return self._query
