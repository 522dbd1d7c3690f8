"""The command catalogue and the twin configuration, per device kind: one place for all.

What a device of each kind executes (``cmd`` topic, :class:`contract.messages.Command`)
and which settings its ``twin/desired`` may carry. The API validates with these
models before it publishes (a 422 naming the field); devices may check with them
too. Every model forbids unknown fields.

Commands of every device kind (a gateway takes none on its ``cmd`` topic):

============  ===========================================  ==============================
name          args                                         the device
============  ===========================================  ==============================
reboot        none                                         restarts (state again)
set_interval  ``interval_s`` 1..86400                      reports at the new interval
identify      ``duration_s`` 1..3600 (default 10)          blinks its LED
ota           ``url`` http(s), ``sha256``, ``version``     downloads, checks, switches
============  ===========================================  ==============================
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Annotated, Any, Final

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from contract.metrics import DeviceKind

MIN_INTERVAL_S: Final = 1
MAX_INTERVAL_S: Final = 86_400


class CatalogueError(ValueError):
    """A command or a configuration the device's kind does not take (permanent).

    ``field``: where the fault is (``name``, ``args.interval_s``, ``config.led``).
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class Args(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


class NoArgs(Args):
    """reboot: no arguments."""


class SetIntervalArgs(Args):
    interval_s: Annotated[int, Field(ge=MIN_INTERVAL_S, le=MAX_INTERVAL_S)]


class IdentifyArgs(Args):
    duration_s: Annotated[int, Field(ge=1, le=3600)] = 10


class OtaArgs(Args):
    url: Annotated[str, StringConstraints(pattern=r"^https?://\S+$", max_length=1024)]
    sha256: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
    version: Annotated[str, StringConstraints(min_length=1, max_length=64)]


DEVICE_COMMANDS: Final[Mapping[str, type[Args]]] = MappingProxyType(
    {
        "reboot": NoArgs,
        "set_interval": SetIntervalArgs,
        "identify": IdentifyArgs,
        "ota": OtaArgs,
    }
)
COMMANDS: Final[Mapping[DeviceKind, Mapping[str, type[Args]]]] = MappingProxyType(
    {kind: (DEVICE_COMMANDS if kind != DeviceKind.GATEWAY else {}) for kind in DeviceKind}
)


class Config(BaseModel):
    """Settings every device kind takes in its twin."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    interval_s: Annotated[int, Field(ge=MIN_INTERVAL_S, le=MAX_INTERVAL_S)] | None = None


class RouterConfig(Config):
    led: bool | None = None  # front LED on or off (a clinic may want it dark at night)
    wifi_channel: Annotated[int, Field(ge=1, le=13)] | None = None


class PowerConfig(Config):
    low_battery_pct: Annotated[float, Field(ge=5, le=95)] | None = None


class HealthConfig(Config):
    units: Annotated[str, StringConstraints(pattern=r"^(metric|imperial)$")] | None = None


CONFIGS: Final[Mapping[DeviceKind, type[Config]]] = MappingProxyType(
    {
        DeviceKind.ROUTER: RouterConfig,
        DeviceKind.POWER: PowerConfig,
        DeviceKind.BP_MONITOR: HealthConfig,
        DeviceKind.PULSE_OXIMETER: HealthConfig,
        DeviceKind.THERMOMETER: HealthConfig,
        DeviceKind.GLUCOMETER: HealthConfig,
        DeviceKind.WEIGHING_SCALE: HealthConfig,
    }
)


def _first(prefix: str, exc: ValidationError) -> CatalogueError:
    error = exc.errors()[0]
    where = ".".join(str(p) for p in error["loc"])
    return CatalogueError(f"{prefix}.{where}" if where else prefix, error["msg"])


def command_names(kind: str) -> list[str]:
    """The commands a kind takes (empty for an unknown kind or a gateway)."""
    try:
        return sorted(COMMANDS[DeviceKind(kind)])
    except ValueError:
        return []


def check_command(kind: str, name: str, args: Mapping[str, Any]) -> dict[str, Any]:
    """The command's arguments as the device gets them; CatalogueError naming the field."""
    names = command_names(kind)
    if name not in names:
        raise CatalogueError("name", f"{name!r} is not a command of a {kind} (one of {names})")
    model = COMMANDS[DeviceKind(kind)][name]
    try:
        return model.model_validate(dict(args)).model_dump(exclude_none=True)
    except ValidationError as exc:
        raise _first("args", exc) from None


def check_config(kind: str, config: Mapping[str, Any]) -> dict[str, Any]:
    """A twin configuration for ``kind``, normalised; CatalogueError naming the field."""
    try:
        model = CONFIGS[DeviceKind(kind)]
    except (ValueError, KeyError):
        raise CatalogueError("config", f"a {kind} has no twin configuration") from None
    try:
        return model.model_validate(dict(config)).model_dump(exclude_none=True)
    except ValidationError as exc:
        raise _first("config", exc) from None
