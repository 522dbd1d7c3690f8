"""Metrics per device kind: units in field names, physical ranges as bounds.

Every metric is optional (a device reports what it has), but a reading must carry
at least one. Ranges are what the hardware can physically report, not what is
clinically or operationally normal: an out-of-range value is a broken device or
a corrupted message, never an alert.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Final, NamedTuple, Self, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator


class DeviceKind(StrEnum):
    ROUTER = "router"
    POWER = "power"
    BP_MONITOR = "bp_monitor"
    PULSE_OXIMETER = "pulse_oximeter"
    THERMOMETER = "thermometer"
    GLUCOMETER = "glucometer"
    WEIGHING_SCALE = "weighing_scale"
    GATEWAY = "gateway"


class Measurement(StrEnum):
    """InfluxDB measurement a kind is stored in (one per family of kinds)."""

    ROUTER = "router"
    POWER = "power"
    HEALTH = "health"
    GATEWAY = "gateway"


HEALTH_KINDS: Final = frozenset(
    {
        DeviceKind.BP_MONITOR,
        DeviceKind.PULSE_OXIMETER,
        DeviceKind.THERMOMETER,
        DeviceKind.GLUCOMETER,
        DeviceKind.WEIGHING_SCALE,
    }
)


def measurement_for(kind: DeviceKind | str) -> Measurement:
    kind = DeviceKind(kind)
    if kind in HEALTH_KINDS:
        return Measurement.HEALTH
    return Measurement(kind.value)


Pct = Annotated[float, Field(ge=0, le=100)]
Count = Annotated[int, Field(ge=0, le=2**53)]
Celsius = Annotated[float, Field(ge=-40, le=125)]
# A device-local patient reference: never leaves the centre (the gateway replaces it).
LocalPatientId = Annotated[str, StringConstraints(min_length=1, max_length=64)]
# HMAC-SHA256 pseudonym, hex: what the centre sends upstream.
PatientRef = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]


class Metrics(BaseModel):
    # no infinity or NaN: InfluxDB cannot store them and a rule would take them as values
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, allow_inf_nan=False)

    @model_validator(mode="after")
    def _not_empty(self) -> Self:
        if all(value is None for value in self.__dict__.values()):
            raise ValueError("a reading needs at least one metric")
        return self


class RouterMetrics(Metrics):
    uptime_s: Count | None = None
    wan_up: bool | None = None
    wan_latency_ms: Annotated[float, Field(ge=0, le=120_000)] | None = None
    wan_rx_bytes: Count | None = None
    wan_tx_bytes: Count | None = None
    wifi_clients: Annotated[int, Field(ge=0, le=1024)] | None = None
    rssi_dbm: Annotated[float, Field(ge=-150, le=0)] | None = None
    cpu_pct: Pct | None = None
    mem_pct: Pct | None = None
    temp_c: Celsius | None = None


class PowerMetrics(Metrics):
    pv_power_w: Annotated[float, Field(ge=0, le=100_000)] | None = None
    pv_voltage_v: Annotated[float, Field(ge=0, le=1_500)] | None = None
    battery_voltage_v: Annotated[float, Field(ge=0, le=1_000)] | None = None
    battery_soc_pct: Pct | None = None
    battery_temp_c: Annotated[float, Field(ge=-40, le=90)] | None = None
    load_power_w: Annotated[float, Field(ge=0, le=100_000)] | None = None
    grid_present: bool | None = None
    inverter_on: bool | None = None
    energy_today_wh: Annotated[float, Field(ge=0, le=10_000_000)] | None = None


class HealthMetrics(Metrics):
    battery_pct: Pct | None = None
    patient_id: LocalPatientId | None = None
    patient_ref: PatientRef | None = None


class BpMonitorMetrics(HealthMetrics):
    systolic_mmhg: Annotated[float, Field(ge=40, le=300)] | None = None
    diastolic_mmhg: Annotated[float, Field(ge=20, le=200)] | None = None
    pulse_bpm: Annotated[float, Field(ge=20, le=300)] | None = None


class PulseOximeterMetrics(HealthMetrics):
    spo2_pct: Annotated[float, Field(ge=50, le=100)] | None = None
    pulse_bpm: Annotated[float, Field(ge=20, le=300)] | None = None


class ThermometerMetrics(HealthMetrics):
    body_temp_c: Annotated[float, Field(ge=25, le=45)] | None = None


class GlucometerMetrics(HealthMetrics):
    glucose_mg_dl: Annotated[float, Field(ge=10, le=1_000)] | None = None


class WeighingScaleMetrics(HealthMetrics):
    weight_kg: Annotated[float, Field(ge=0.5, le=300)] | None = None


class GatewayMetrics(Metrics):
    cpu_pct: Pct | None = None
    disk_free_mb: Annotated[float, Field(ge=0)] | None = None
    queue_depth: Count | None = None
    queue_oldest_s: Annotated[float, Field(ge=0)] | None = None
    uplink_up: bool | None = None
    dropped_total: Count | None = None
    uplink_rejected_total: Count | None = None  # batches the central broker did not take
    unreceipted: Count | None = None  # readings sent, not yet named by a storage receipt
    unreceipted_oldest_s: Annotated[float, Field(ge=0)] | None = None  # the oldest's wait
    # readings stored with an implausible device time (kept, flagged; docs/gateway.md)
    clock_suspect_total: Count | None = None
    # hours of uplink outage the outbox's free disk budget holds at the current inflow
    autonomy_h: Annotated[float, Field(ge=0)] | None = None


METRICS_BY_KIND: Final[dict[DeviceKind, type[Metrics]]] = {
    DeviceKind.ROUTER: RouterMetrics,
    DeviceKind.POWER: PowerMetrics,
    DeviceKind.BP_MONITOR: BpMonitorMetrics,
    DeviceKind.PULSE_OXIMETER: PulseOximeterMetrics,
    DeviceKind.THERMOMETER: ThermometerMetrics,
    DeviceKind.GLUCOMETER: GlucometerMetrics,
    DeviceKind.WEIGHING_SCALE: WeighingScaleMetrics,
    DeviceKind.GATEWAY: GatewayMetrics,
}


# Units by the metric name's suffix ("units in field names"); the longest suffix wins.
UNITS: Final[dict[str, str]] = {
    "_pct": "%",
    "_c": "°C",
    "_ms": "ms",
    "_s": "s",
    "_h": "h",
    "_w": "W",
    "_wh": "Wh",
    "_v": "V",
    "_mb": "MB",
    "_bytes": "bytes",
    "_dbm": "dBm",
    "_mmhg": "mmHg",
    "_mg_dl": "mg/dL",
    "_kg": "kg",
    "_bpm": "bpm",
}
# Metrics that are references, not measurements: no rule may compare them.
NOT_MEASURED: Final = frozenset({"patient_id", "patient_ref"})


class MetricSpec(NamedTuple):
    """What a kind's metric is: its Python type, unit and physical bounds (None: open)."""

    kind: DeviceKind
    name: str
    type: type
    unit: str | None
    low: float | None
    high: float | None


def metric_spec(kind: DeviceKind | str, name: str) -> MetricSpec | None:
    """The spec of ``kind``'s metric ``name``; None if the kind has no such metric."""
    kind = DeviceKind(kind)
    field = METRICS_BY_KIND[kind].model_fields.get(name)
    if field is None or name in NOT_MEASURED:
        return None
    base: Any = field.annotation
    low = high = None
    for arg in get_args(base) or (base,):
        if arg is type(None):
            continue
        base = arg
        if get_origin(arg) is Annotated:
            base, *extras = get_args(arg)
            for extra in extras:
                for bound in getattr(extra, "metadata", [extra]):
                    low = getattr(bound, "ge", low)
                    high = getattr(bound, "le", high)
    unit = next(
        (
            u
            for suffix, u in sorted(UNITS.items(), key=lambda i: -len(i[0]))
            if name.endswith(suffix)
        ),
        None,
    )
    return MetricSpec(kind, name, base, unit, low, high)
