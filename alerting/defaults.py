"""The default rule pack for centres (``gramlink alerts install-defaults``).

Each rule has a stable pack key, so installing the pack again changes nothing
and a rule a user edited is left alone. Why each threshold is what it is, is
in the rule's description and in docs/alerts.md.
"""

from __future__ import annotations

from typing import Any, Final

from alerting.rules import RuleSpec


def _rule(name: str, severity: str, condition: dict[str, Any], why: str, **extra: Any) -> RuleSpec:
    return RuleSpec.model_validate(
        {"name": name, "severity": severity, "condition": condition, "description": why, **extra}
    )


def _clinical(name: str, kind: str, *bounds: tuple[str, str, float], why: str) -> RuleSpec:
    condition = {
        "type": "clinical",
        "kind": kind,
        "any": [{"metric": m, "op": op, "value": v} for m, op, v in bounds],
    }
    return _rule(name, "critical", condition, why)


DEFAULT_PACK: Final[dict[str, RuleSpec]] = {
    "centre-offline": _rule(
        "Centre offline",
        "critical",
        {"type": "offline", "target": "gateway", "after": "10m"},
        "The centre's gateway Last Will held 10 min: nothing from the centre reaches us. "
        "Ten minutes rides out a 2G/VSAT reconnect; its devices' absence alerts are "
        "inhibited meanwhile.",
    ),
    "wan-down": _rule(
        "WAN down",
        "critical",
        {
            "type": "threshold",
            "kind": "router",
            "metric": "wan_up",
            "op": "==",
            "value": False,
            "for": "5m",
        },
        "The router reports its uplink down for 5 min: the village has no internet and "
        "telemedicine calls fail. Shorter drops are normal on rural links.",
    ),
    "wan-latency": _rule(
        "WAN latency high",
        "warning",
        {
            "type": "threshold",
            "kind": "router",
            "metric": "wan_latency_ms",
            "op": ">",
            "value": 800,
            "for": "15m",
            "clears": 600,
        },
        "Above 800 ms round trip a video consultation breaks up (ITU-T G.114 puts one-way "
        "delay for interactive use under 400 ms); 15 min ignores short congestion, 600 ms "
        "to clear stops flapping.",
    ),
    "battery-low": _rule(
        "Battery low",
        "warning",
        {
            "type": "threshold",
            "kind": "power",
            "metric": "battery_soc_pct",
            "op": "<",
            "value": 20,
            "for": "10m",
            "clears": 25,
        },
        "Below 20% state of charge a lead-acid or LFP bank is close to the inverter's "
        "low-voltage disconnect; 10 min rides out a load spike, 25% to clear stops "
        "flapping while it recharges.",
        edge=True,
    ),
    "battery-hot": _rule(
        "Battery over 45 °C",
        "critical",
        {
            "type": "threshold",
            "kind": "power",
            "metric": "battery_temp_c",
            "op": ">",
            "value": 45,
            "for": "2m",
            "clears": 42,
        },
        "45 °C is the usual upper limit of a battery's charging range; above it life "
        "shortens fast and LFP/lead-acid chargers should stop.",
    ),
    "battery-heating": _rule(
        "Battery heating fast",
        "warning",
        {
            "type": "rate",
            "kind": "power",
            "metric": "battery_temp_c",
            "direction": "rises",
            "by": 2,
            "per": "10m",
        },
        "2 °C in 10 min is more than sun or load explain: a failing cell or a blocked vent.",
    ),
    "autonomy-low": _rule(
        "Battery autonomy below 4 h",
        "warning",
        {"type": "forecast", "below_h": 4, "floor_pct": 10, "window": "1h"},
        "At the last hour's net discharge rate the battery reaches 10% within 4 h and the "
        "grid is out: time to shed load or plan a visit before the centre goes dark.",
    ),
    "grid-cut": _rule(
        "Grid cut over 4 h",
        "warning",
        {
            "type": "threshold",
            "kind": "power",
            "metric": "grid_present",
            "op": "==",
            "value": False,
            "for": "4h",
        },
        "Rural feeders drop for an hour or two daily; over 4 h the battery carries the "
        "centre and the district should know.",
    ),
    "solar-yield": _rule(
        "Solar yield below 30% of expected",
        "warning",
        {"type": "solar_yield", "below_pct": 30, "after_pct": 40},
        "Below 30% of the clear-sky expectation (pvlib Ineichen, the centre's place and "
        "date, the array's rated power) even an overcast day is unlikely: dirty or shaded "
        "panels, a tripped PV breaker or a failed charge controller. Judged from when 40% "
        "of the day's expected energy is due.",
    ),
    "health-device-battery": _rule(
        "Health device battery below 15%",
        "info",
        {
            "type": "threshold",
            "kind": "health",
            "metric": "battery_pct",
            "op": "<",
            "value": 15,
            "clears": 30,
        },
        "A measurement device below 15% may die during a consultation; charge it today.",
    ),
    "gateway-backlog": _rule(
        "Gateway backlog older than 1 h",
        "warning",
        {
            "type": "threshold",
            "kind": "gateway",
            "metric": "queue_oldest_s",
            "op": ">",
            "value": 3600,
            "clears": 600,
        },
        "The gateway holds readings over an hour old: the uplink is too thin or down. "
        "Clears when the oldest is under 10 min again.",
    ),
    "gateway-disk": _rule(
        "Gateway disk below 500 MB",
        "warning",
        {
            "type": "threshold",
            "kind": "gateway",
            "metric": "disk_free_mb",
            "op": "<",
            "value": 500,
            "clears": 600,
        },
        "At 500 MB a gateway holds about a day of a centre's readings before it has to "
        "evict; someone must free space or fix the uplink.",
    ),
    "gateway-autonomy": _rule(
        "Gateway autonomy below 12 h",
        "warning",
        {
            "type": "threshold",
            "kind": "gateway",
            "metric": "autonomy_h",
            "op": "<",
            "value": 12,
            "for": "10m",
            "clears": 18,
        },
        "At the current inflow the gateway's disk budget holds less than 12 h of outage: "
        "a night's uplink cut would make it evict readings. Free space or raise the budget.",
    ),
    "device-silent": _rule(
        "Device silent",
        "warning",
        {"type": "absence"},
        "No reading for three of the device's own reporting intervals (learnt from its "
        "readings: a minute for a power unit, 15 min for a health device's battery "
        "report): it is off, broken or out of range. Inhibited while its centre is offline.",
    ),
    "spo2-low": _clinical(
        "SpO2 below 90%",
        "pulse_oximeter",
        ("spo2_pct", "<", 90),
        why="Oxygen saturation below 90% is hypoxaemia (WHO pulse oximetry guidance): "
        "refer at once.",
    ),
    "bp-crisis": _clinical(
        "Blood pressure crisis",
        "bp_monitor",
        ("systolic_mmhg", ">=", 180),
        ("diastolic_mmhg", ">=", 120),
        why="180/120 mmHg or above is a hypertensive crisis (ACC/AHA): urgent evaluation.",
    ),
    "temperature-out-of-range": _clinical(
        "Body temperature out of range",
        "thermometer",
        ("body_temp_c", ">=", 39.5),
        ("body_temp_c", "<", 35),
        why="39.5 °C or more is a high fever (in a child, a danger sign); below 35 °C is "
        "hypothermia.",
    ),
    "glucose-out-of-range": _clinical(
        "Blood glucose out of range",
        "glucometer",
        ("glucose_mg_dl", "<", 54),
        ("glucose_mg_dl", ">", 300),
        why="Below 54 mg/dL is clinically significant (level 2) hypoglycaemia (ADA); above "
        "300 mg/dL risks ketoacidosis.",
    ),
}
