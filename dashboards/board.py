"""What every dashboard shares: uid and tags, the place variables, the time range,
and the alerts of the ``alerts`` measurement (written by the alert engine) as annotations.

The SDK models an annotation's target as Grafana's built-in annotation target
only, so :class:`InfluxAnnotation` adds the InfluxDB datasource's own keys
(``query``, ``tagsColumn``, ``textColumn``: Grafana's InfluxDB annotation, which
Grafana 11 reads and migrates to its query editor). These keys are the one part
of a generated dashboard the SDK does not read back (``UNMODELLED_ANNOTATION_KEYS``).
"""

from __future__ import annotations

from typing import Final

from grafana_foundation_sdk.builders.dashboard import Dashboard, QueryVariable
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.models import dashboard as model

from dashboards import datasource
from dashboards.variables import CENTRE

UNMODELLED_ANNOTATION_KEYS: Final = ("query", "tagsColumn", "textColumn")
ALERTS_QUERY: Final = (
    'SELECT "value", "id", "rule", "severity", "device" FROM "alerts" '
    f"WHERE \"state\" = 'firing' AND {CENTRE} AND $timeFilter"
)
FOLDER: Final = "GramLink"


class InfluxAnnotation(model.AnnotationQuery):
    def __init__(self, name: str, query: str, tags: str, text: str, color: str) -> None:
        super().__init__(name=name, datasource=datasource.ref(), enable=True, icon_color=color)
        self.query = query
        self.tags_column = tags
        self.text_column = text

    def to_json(self) -> dict[str, object]:
        payload = super().to_json()
        payload["query"] = " ".join(self.query.split())
        payload["tagsColumn"] = self.tags_column
        payload["textColumn"] = self.text_column
        return payload


class Annotation(cogbuilder.Builder[model.AnnotationQuery]):
    def __init__(self, annotation: InfluxAnnotation) -> None:
        self._annotation = annotation

    def build(self) -> model.AnnotationQuery:
        return self._annotation


def alerts_annotation() -> Annotation:
    """Firing alerts of the selected centres as markers on every time series."""
    return Annotation(InfluxAnnotation("Alerts", ALERTS_QUERY, "rule,severity,device", "id", "red"))


def board(
    uid: str,
    title: str,
    description: str,
    variables: list[QueryVariable],
    *,
    time_from: str = "now-24h",
    annotations: bool = True,
) -> Dashboard:
    dash = (
        Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(["gramlink"])
        .timezone("browser")
        .time(time_from, "now")
        .refresh("1m")
        .editable()
        .variables(list[cogbuilder.Builder[model.VariableModel]](variables))
    )
    if annotations:
        dash.annotation(alerts_annotation())
    return dash
