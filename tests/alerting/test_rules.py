"""Rules are checked against the contract: a bad metric, unit, threshold or duration is named."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from alerting.defaults import DEFAULT_PACK
from alerting.rules import Place, RuleSpec, Scope, parse_duration


def rule(condition: dict[str, Any], **extra: Any) -> RuleSpec:
    return RuleSpec.model_validate({"name": "r", "condition": condition, **extra})


def refusal(condition: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as caught:
        rule(condition)
    return str(caught.value.errors()[0]["msg"])


BATTERY = {"type": "threshold", "kind": "power", "metric": "battery_soc_pct", "op": "<"}


def test_the_issue_s_battery_rule_reads_as_written() -> None:
    spec = rule({**BATTERY, "value": 20, "for": "10m", "clears": 25})
    assert spec.condition.for_s == 600  # type: ignore[union-attr]
    assert spec.condition.clears == 25  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("condition", "field"),
    [
        ({**BATTERY, "metric": "spo2_pct", "value": 20}, "metric:"),
        ({**BATTERY, "value": 120}, "value:"),
        ({**BATTERY, "value": 20, "unit": "°F"}, "unit:"),
        ({**BATTERY, "value": 20, "clears": 15}, "clears:"),
        ({**BATTERY, "op": "==", "value": 20}, "op:"),
        (
            {"type": "threshold", "kind": "router", "metric": "wan_up", "op": "<", "value": 1},
            "value:",
        ),
        (
            {
                "type": "clinical",
                "kind": "power",
                "any": [{"metric": "spo2_pct", "op": "<", "value": 90}],
            },
            "kind:",
        ),
        (
            {
                "type": "rate",
                "kind": "power",
                "metric": "grid_present",
                "direction": "rises",
                "by": 1,
                "per": "1m",
            },
            "metric:",
        ),
    ],
)
def test_a_rule_the_contract_does_not_allow_is_refused_naming_the_field(
    condition: dict[str, Any], field: str
) -> None:
    assert field in refusal(condition)


def test_a_duration_in_an_unknown_unit_is_refused_at_its_field() -> None:
    with pytest.raises(ValidationError) as caught:
        rule({**BATTERY, "value": 20, "for": "10y"})
    error = caught.value.errors()[0]
    assert error["loc"][-1] == "for"
    assert "unit must be s, m, h or d" in error["msg"]


@pytest.mark.parametrize(("text", "seconds"), [("90s", 90), ("10m", 600), ("4h", 14400), (30, 30)])
def test_durations(text: str | int, seconds: float) -> None:
    assert parse_duration(text) == seconds


def test_health_selector_covers_every_health_kind_with_the_metric() -> None:
    spec = rule(
        {"type": "threshold", "kind": "health", "metric": "battery_pct", "op": "<", "value": 15}
    )
    assert "pulse_oximeter" in spec.kinds() and "power" not in spec.kinds()


def scope(kind: str, value: str | None = None) -> Scope:
    return Scope.model_validate({"kind": kind, "value": value})


def test_scopes_match_the_place_they_name() -> None:
    spoke = Place("ctr-2", "pwr-1", "power", hub="ctr-1", district="Samba", state="J&K")
    assert scope("hub", "ctr-1").matches(spoke)
    assert scope("hub", "ctr-1").matches(spoke._replace(centre="ctr-1", hub=None))
    assert not scope("hub", "ctr-9").matches(spoke)
    assert scope("district", "Samba").matches(spoke)
    assert not scope("device_kind", "router").matches(spoke)
    with pytest.raises(ValidationError):
        scope("centre")
    with pytest.raises(ValidationError):
        scope("device_kind", "toaster")


def test_the_default_pack_covers_what_the_issue_lists() -> None:
    conditions = {key: spec.condition for key, spec in DEFAULT_PACK.items()}
    assert {
        "wan-down",
        "wan-latency",
        "battery-low",
        "battery-hot",
        "autonomy-low",
        "grid-cut",
        "solar-yield",
        "health-device-battery",
        "gateway-backlog",
        "gateway-disk",
        "device-silent",
        "spo2-low",
        "bp-crisis",
        "temperature-out-of-range",
        "glucose-out-of-range",
    } <= set(conditions)
    assert all(spec.description for spec in DEFAULT_PACK.values())
    assert all(spec.runs_at_edge for key, spec in DEFAULT_PACK.items() if spec.clinical)
