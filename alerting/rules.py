"""The alert rule model: a name, a severity, a scope and one condition.

A rule is checked against the contract when it is built: a metric its device
kind does not have, a unit that is not the metric's, a threshold outside what
the hardware can report or a duration in an unknown unit is a validation error
naming the field. The API stores rules as :meth:`Rule.model_dump` JSON; the
gateway receives the same JSON on its downlink, so both evaluate one model.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Any, Literal, NamedTuple, Self

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from contract.metrics import HEALTH_KINDS, DeviceKind, MetricSpec, metric_spec


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


SEVERITY_RANK = {Severity.INFO: 0, Severity.WARNING: 1, Severity.CRITICAL: 2}

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$")
_SECONDS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}


def parse_duration(value: Any) -> Any:
    """Seconds from ``90``, ``"90s"``, ``"10m"``, ``"4h"`` or ``"1d"``; other values as given."""
    if isinstance(value, str):
        match = _DURATION.match(value.lower())
        if match is None:
            raise ValueError(f"duration {value!r}: write a number and a unit, e.g. '10m'")
        number, unit = match.groups()
        if unit not in _SECONDS and unit != "":
            raise ValueError(f"duration {value!r}: unit must be s, m, h or d")
        return float(number) * _SECONDS.get(unit, 1)
    return value


Duration = Annotated[float, BeforeValidator(parse_duration), Field(ge=0, le=30 * 86400)]
# A device kind, or "health": any of the health kinds that has the metric.
KindSelector = DeviceKind | Literal["health"]
Op = Literal["<", "<=", ">", ">=", "==", "!="]
Value = bool | float


class Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


def kinds_of(selector: KindSelector | None) -> frozenset[DeviceKind]:
    """The device kinds a selector names (None: every kind)."""
    if selector is None:
        return frozenset(DeviceKind)
    if selector == "health":
        return HEALTH_KINDS
    return frozenset({DeviceKind(selector)})


def _spec(selector: KindSelector, metric: str) -> MetricSpec:
    """The metric's spec for the selector (every kind it names that has the metric)."""
    specs = [s for k in kinds_of(selector) if (s := metric_spec(k, metric)) is not None]
    if not specs:
        raise ValueError(f"metric: {metric!r} is not a metric of {selector}")
    return specs[0]


def _check_value(spec: MetricSpec, op: Op, value: Value, unit: str | None, what: str) -> None:
    if unit is not None and unit != spec.unit:
        raise ValueError(f"unit: {spec.name} is in {spec.unit or 'no unit'}, not {unit!r}")
    if spec.type is bool:
        if not isinstance(value, bool) or op not in ("==", "!="):
            raise ValueError(f"{what}: {spec.name} is true/false: compare it with == or !=")
        return
    if isinstance(value, bool):
        raise ValueError(f"{what}: {spec.name} is a number, not true/false")
    if op in ("==", "!="):
        raise ValueError(f"op: compare a number ({spec.name}) with <, <=, > or >=")
    if (spec.low is not None and value < spec.low) or (spec.high is not None and value > spec.high):
        low = "-inf" if spec.low is None else f"{spec.low:g}"
        high = "inf" if spec.high is None else f"{spec.high:g}"
        raise ValueError(f"{what}: {value:g} is outside what {spec.name} can be ({low}..{high})")


class Bound(Strict):
    """``metric op value``: e.g. ``spo2_pct < 90``."""

    metric: str
    op: Op
    value: Value
    unit: str | None = None

    def check(self, selector: KindSelector) -> None:
        _check_value(_spec(selector, self.metric), self.op, self.value, self.unit, "value")


class Threshold(Strict):
    """``metric op value`` held for ``for_s``; clears past ``clears`` (the hysteresis).

    ``battery_soc_pct < 20 for 10m, clears above 25`` is
    ``{"kind": "power", "metric": "battery_soc_pct", "op": "<", "value": 20,
    "for": "10m", "clears": 25}``. Without ``clears`` it clears when the
    comparison no longer holds.
    """

    type: Literal["threshold"] = "threshold"
    kind: KindSelector
    metric: str
    op: Op
    value: Value
    for_s: Duration = Field(0, alias="for")
    clears: Value | None = None
    unit: str | None = None

    @model_validator(mode="after")
    def _valid(self) -> Self:
        spec = _spec(self.kind, self.metric)
        _check_value(spec, self.op, self.value, self.unit, "value")
        if self.clears is not None:
            if spec.type is bool:
                raise ValueError("clears: a true/false metric clears when it changes back")
            _check_value(spec, self.op, self.clears, None, "clears")
            if isinstance(self.value, bool) or isinstance(self.clears, bool):
                raise ValueError("clears: must be a number")
            below = self.op in ("<", "<=")
            if (below and self.clears < self.value) or (not below and self.clears > self.value):
                side = "at or above" if below else "at or below"
                raise ValueError(f"clears: must be {side} value {self.value:g} (the hysteresis)")
        return self


class Rate(Strict):
    """``metric`` rises (or falls) by more than ``by`` within ``per_s``."""

    type: Literal["rate"] = "rate"
    kind: KindSelector
    metric: str
    direction: Literal["rises", "falls"]
    by: float = Field(gt=0)
    per_s: Duration = Field(alias="per")
    unit: str | None = None

    @model_validator(mode="after")
    def _valid(self) -> Self:
        spec = _spec(self.kind, self.metric)
        if spec.type is bool:
            raise ValueError(f"metric: {self.metric} is true/false: it has no rate of change")
        if self.unit is not None and self.unit != spec.unit:
            raise ValueError(f"unit: {spec.name} is in {spec.unit or 'no unit'}, not {self.unit!r}")
        if spec.low is not None and spec.high is not None and self.by > spec.high - spec.low:
            raise ValueError(f"by: {self.by:g} is more than {spec.name}'s whole range")
        if self.per_s <= 0:
            raise ValueError("per: the window must be longer than 0")
        return self


class Absence(Strict):
    """No reading from a device for ``after_s`` (default: three of its reporting intervals)."""

    type: Literal["absence"] = "absence"
    kind: KindSelector | None = None
    after_s: Duration | None = Field(None, alias="after")


class Offline(Strict):
    """A device's or gateway's Last Will (``state`` online=false) held for ``after_s``.

    A gateway offline makes its centre offline: the alert's subject is the centre.
    """

    type: Literal["offline"] = "offline"
    target: Literal["device", "gateway"] = "gateway"
    after_s: Duration = Field(300, alias="after")


class Forecast(Strict):
    """Battery autonomy below ``below_h`` hours while the grid is absent.

    Autonomy: hours until ``battery_soc_pct`` reaches ``floor_pct`` at the net
    discharge rate fitted over the last ``window_s`` of readings.
    """

    type: Literal["forecast"] = "forecast"
    below_h: float = Field(gt=0, le=240)
    floor_pct: float = Field(10, ge=0, lt=100)
    window_s: Duration = Field(3600, alias="window")


class SolarYield(Strict):
    """Today's PV energy below ``below_pct`` % of the clear-sky expectation so far.

    Judged only once the expectation so far is at least ``after_pct`` % of the
    whole day's, so a cloudy dawn does not fire it.
    """

    type: Literal["solar_yield"] = "solar_yield"
    below_pct: float = Field(gt=0, lt=100)
    after_pct: float = Field(40, ge=0, le=100)


class Clinical(Strict):
    """A health measurement outside a safe range: fires at once on any of ``any``."""

    type: Literal["clinical"] = "clinical"
    kind: KindSelector
    any: list[Bound] = Field(min_length=1, max_length=8)

    @model_validator(mode="after")
    def _valid(self) -> Self:
        if not kinds_of(self.kind) <= HEALTH_KINDS:
            raise ValueError(f"kind: clinical rules are for health devices, not {self.kind}")
        for index, bound in enumerate(self.any):
            try:
                bound.check(self.kind)
            except ValueError as exc:  # name the bound: "any.0.value: ..."
                raise ValueError(f"any.{index}.{exc}") from exc
        return self


Condition = Annotated[
    Threshold | Rate | Absence | Offline | Forecast | SolarYield | Clinical,
    Field(discriminator="type"),
]
# Conditions whose alert's subject is a device's reading stream.
READING_CONDITIONS = ("threshold", "rate", "forecast", "solar_yield", "clinical")
CONDITION_TYPES = (*READING_CONDITIONS, "absence", "offline")


class ScopeKind(StrEnum):
    ALL = "all"
    CENTRE = "centre"
    HUB = "hub"  # the hub centre and its spokes
    DISTRICT = "district"
    STATE = "state"
    DEVICE_KIND = "device_kind"
    DEVICE = "device"


class Place(NamedTuple):
    """What scopes are matched against: a device and where it is."""

    centre: str
    device: str | None
    kind: str | None
    hub: str | None  # the centre's hub (None: a hub, or no hub)
    district: str | None
    state: str | None


class Scope(Strict):
    kind: ScopeKind = ScopeKind.ALL
    value: str | None = None

    @model_validator(mode="after")
    def _valid(self) -> Self:
        if self.kind is ScopeKind.ALL:
            if self.value is not None:
                raise ValueError("value: a scope of all takes no value")
        elif not self.value:
            raise ValueError(f"value: a {self.kind} scope needs one")
        elif self.kind is ScopeKind.DEVICE_KIND and self.value not in set(DeviceKind):
            raise ValueError(f"value: {self.value!r} is not a device kind")
        return self

    def matches(self, place: Place) -> bool:
        match self.kind:
            case ScopeKind.ALL:
                return True
            case ScopeKind.CENTRE:
                return place.centre == self.value
            case ScopeKind.HUB:
                return self.value in (place.centre, place.hub)
            case ScopeKind.DISTRICT:
                return place.district == self.value
            case ScopeKind.STATE:
                return place.state == self.value
            case ScopeKind.DEVICE_KIND:
                return place.kind == self.value
            case ScopeKind.DEVICE:
                return place.device == self.value
        return False  # pragma: no cover


class RuleSpec(Strict):
    """What a user writes: the body of ``POST /v1/alert-rules``."""

    name: Annotated[str, Field(min_length=1, max_length=128)]
    description: Annotated[str, Field(max_length=1024)] | None = None
    severity: Severity = Severity.WARNING
    scope: Scope = Scope()
    condition: Condition
    enabled: bool = True
    # also evaluated at the centre's gateway (clinical rules always are)
    edge: bool = False

    @property
    def clinical(self) -> bool:
        return self.condition.type == "clinical"

    @property
    def runs_at_edge(self) -> bool:
        return self.edge or self.clinical

    def kinds(self) -> frozenset[DeviceKind]:
        """The device kinds whose readings or presence this rule looks at."""
        condition = self.condition
        match condition.type:
            case "threshold" | "rate" | "clinical" | "absence":
                return kinds_of(getattr(condition, "kind", None))
            case "forecast" | "solar_yield":
                return frozenset({DeviceKind.POWER})
            case "offline":
                if condition.target == "gateway":
                    return frozenset({DeviceKind.GATEWAY})
                return frozenset(DeviceKind) - {DeviceKind.GATEWAY}
        return frozenset()  # pragma: no cover


class Rule(RuleSpec):
    """A stored rule: ``id`` is stable for the rule's life (alert ids derive from it)."""

    id: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{0,63}$")]
    version: int = 1
