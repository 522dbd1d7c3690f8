"""Panel helpers: every panel reads the one InfluxDB datasource with raw InfluxQL.

Each helper takes a title, a description (what a technician reads from it) and
one or more :class:`dashboards.datasource.Influx` targets, and returns an SDK
panel builder with the house defaults (size, unit, legend). Only panel types
the pinned Grafana major ships are used (``tests/dashboards`` checks).
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import (
    bargauge,
    common,
    dashboard,
    geomap,
    stat,
    statetimeline,
    table,
    timeseries,
)
from grafana_foundation_sdk.models.common import (
    BarGaugeDisplayMode,
    FieldTextAlignment,
    FrameGeometrySourceMode,
    GraphDrawStyle,
    LegendDisplayMode,
    LegendPlacement,
    VizOrientation,
)
from grafana_foundation_sdk.models.dashboard import (
    DataTransformerConfig,
    DynamicConfigValue,
    FieldColorModeId,
    ThresholdsMode,
    ValueMap,
    ValueMappingResult,
)
from grafana_foundation_sdk.models.dashboard import Threshold as Step
from grafana_foundation_sdk.models.geomap import TooltipMode

from dashboards import datasource
from dashboards.datasource import Influx


def thresholds(*steps: tuple[float | None, str]) -> dashboard.ThresholdsConfig:
    return (
        dashboard.ThresholdsConfig()
        .mode(ThresholdsMode.ABSOLUTE)
        .steps([Step(value=value, color=color) for value, color in steps])
    )


def _legend() -> common.VizLegendOptions:
    return (
        common.VizLegendOptions()
        .display_mode(LegendDisplayMode.LIST)
        .placement(LegendPlacement.BOTTOM)
        .show_legend(True)
    )


def series(
    title: str,
    description: str,
    *targets: Influx,
    unit: str = "short",
    width: int = 12,
    right: str | None = None,
) -> timeseries.Panel:
    """A time series; ``right``: a regexp of series names drawn on a second axis, right."""
    panel = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(datasource.ref())
        .unit(unit)
        .height(8)
        .span(width)
        .legend(_legend())
        .line_width(1)
        .fill_opacity(10)
    )
    for target in targets:
        panel.with_target(target)
    if right is not None:
        panel.override_by_regexp(
            right, [DynamicConfigValue(id_val="custom.axisPlacement", value="right")]
        )
    return panel


def bars(
    title: str, description: str, *targets: Influx, unit: str = "short", width: int = 12
) -> timeseries.Panel:
    """A time series drawn as bars: one bar per day (or interval) per series."""
    return (
        series(title, description, *targets, unit=unit, width=width)
        .draw_style(GraphDrawStyle.BARS)
        .fill_opacity(80)
    )


def states(
    title: str, description: str, target: Influx, on: str, off: str, width: int = 12
) -> statetimeline.Panel:
    """A state timeline of a boolean: green ``on``, red ``off``."""
    return (
        statetimeline.Panel()
        .title(title)
        .description(description)
        .datasource(datasource.ref())
        .with_target(target)
        .height(6)
        .span(width)
        .line_width(0)
        .fill_opacity(70)
        .mappings(
            [
                ValueMap(
                    options={
                        "true": ValueMappingResult(text=on, color="green", index=0),
                        "false": ValueMappingResult(text=off, color="red", index=1),
                    }
                )
            ]
        )
    )


def single(
    title: str,
    description: str,
    target: Influx,
    *,
    unit: str = "short",
    steps: tuple[tuple[float | None, str], ...] = ((None, "green"),),
    width: int = 6,
) -> stat.Panel:
    return (
        stat.Panel()
        .title(title)
        .description(description)
        .datasource(datasource.ref())
        .with_target(target)
        .unit(unit)
        .height(5)
        .span(width)
        .thresholds(thresholds(*steps))
    )


def gauges(
    title: str,
    description: str,
    target: Influx,
    *,
    unit: str = "short",
    steps: tuple[tuple[float | None, str], ...] = ((None, "green"),),
    width: int = 6,
) -> bargauge.Panel:
    return (
        bargauge.Panel()
        .title(title)
        .description(description)
        .datasource(datasource.ref())
        .with_target(target)
        .unit(unit)
        .height(5)
        .span(width)
        .orientation(VizOrientation.HORIZONTAL)
        .display_mode(BarGaugeDisplayMode.BASIC)
        .thresholds(thresholds(*steps))
    )


def grid(
    title: str,
    description: str,
    target: Influx,
    *,
    sort_by: str | None = None,
    descending: bool = False,
    width: int = 12,
    unit: str = "short",
) -> table.Panel:
    """A table of the target's rows (``Influx(...).table()``), optionally sorted."""
    panel = (
        table.Panel()
        .title(title)
        .description(description)
        .datasource(datasource.ref())
        .with_target(target)
        .unit(unit)
        .height(8)
        .span(width)
        .align(FieldTextAlignment.AUTO)
        .inspect(False)
    )
    if sort_by is not None:
        panel.sort_by([common.TableSortByFieldState().display_name(sort_by).desc(descending)])
    return panel


def map_of_centres(title: str, description: str, target: Influx) -> geomap.Panel:
    """Centres as markers at their latitude/longitude, green online, red offline."""
    markers = (
        common.MapLayerOptions()
        .type("markers")
        .name("Centres")
        .location(
            common.FrameGeometrySource()
            .mode(FrameGeometrySourceMode.COORDS)
            .latitude("latitude")
            .longitude("longitude")
        )
        .config(
            {
                "showLegend": True,
                "style": {
                    "color": {"field": "online", "fixed": "dark-green"},
                    "size": {"fixed": 8},
                    "text": {"field": "name", "mode": "field"},
                },
            }
        )
        .tooltip(True)
    )
    return (
        geomap.Panel()
        .title(title)
        .description(description)
        .datasource(datasource.ref())
        .with_target(target)
        .height(12)
        .span(12)
        .view(geomap.MapViewConfig().id("fit").lat(0).lon(0).zoom(5))
        .basemap(common.MapLayerOptions().type("default").name("Basemap"))
        .layers([markers])
        .tooltip(geomap.TooltipOptions().mode(TooltipMode.DETAILS))
        .color_scheme(dashboard.FieldColor().mode(FieldColorModeId.THRESHOLDS))
        .thresholds(thresholds((None, "red"), (1, "green")))
        .mappings(
            [
                ValueMap(
                    options={
                        "0": ValueMappingResult(text="offline", color="red", index=0),
                        "1": ValueMappingResult(text="online", color="green", index=1),
                    }
                )
            ]
        )
        .with_transformation(DataTransformerConfig(id_val="merge", options={}))
    )
