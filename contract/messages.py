"""Message models, one per row of the topic table in DESIGN.md.

All models are frozen, forbid unknown fields and carry the schema version ``v``:
the integer 1, nothing else (not ``1.0``, not ``true``, not ``"1"``). Built in
Python, ``v`` defaults to 1; on the wire it is required (:mod:`contract.codec`
refuses a message without it, reason ``wrong_version``).
Readings (telemetry and events) are generic over the device kind so that a
discriminated union on ``kind`` picks the right metrics model in one pass of
pydantic-core; build them with :func:`telemetry` and :func:`event`.
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Generic, Literal, TypeVar, Union

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, TypeAdapter

from contract.metrics import METRICS_BY_KIND, DeviceKind, Metrics
from contract.topics import ID_RE

SCHEMA_VERSION: Final = 1
MAX_TS_MS: Final = 4_102_444_800_000  # 2100-01-01: anything later is corruption
MAX_SEQ: Final = 2**53

# The schema version: an integer (strict: no float, no bool) equal to SCHEMA_VERSION.
# (``Literal[1]`` would accept ``1.0`` and ``true``: pydantic-core compares literals by value.)
SchemaVersion = Annotated[int, Field(ge=SCHEMA_VERSION, le=SCHEMA_VERSION)]

Id = Annotated[str, StringConstraints(pattern=f"^{ID_RE.pattern}$")]
TimestampMs = Annotated[int, Field(ge=0, le=MAX_TS_MS)]
Seq = Annotated[int, Field(ge=0, le=MAX_SEQ)]
Name = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,31}$")]
Scalar = bool | int | float | Annotated[str, StringConstraints(max_length=256)]
CommandStatus = Literal["accepted", "in_progress", "done", "failed"]


class Message(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, allow_inf_nan=False)

    v: SchemaVersion = SCHEMA_VERSION


K = TypeVar("K", bound=str)
M = TypeVar("M", bound=Metrics)


class Telemetry(Message, Generic[K, M]):
    """One periodic reading: device time ``ts`` (ms) and per-device ``seq``."""

    kind: K
    ts: TimestampMs
    seq: Seq
    metrics: M


class Event(Message, Generic[K, M]):
    """A discrete event: a health measurement, grid lost, a reboot."""

    kind: K
    ts: TimestampMs
    seq: Seq
    name: Name
    metrics: M | None = None
    detail: dict[Name, Scalar] | None = None


class State(Message):
    """Retained presence: the birth message, or the Last Will (``online: false``)."""

    online: bool
    kind: Literal[tuple(k.value for k in DeviceKind)] | None = None  # type: ignore[valid-type]
    model: Annotated[str, StringConstraints(max_length=64)] | None = None
    fw: Annotated[str, StringConstraints(max_length=64)] | None = None
    ts: TimestampMs | None = None


class Command(Message):
    """A command to a device; ``expires`` is the epoch ms after which it must not run."""

    id: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
    name: Name
    args: dict[Name, Scalar] = Field(default_factory=dict)
    expires: TimestampMs | None = None


class CommandAck(Message):
    id: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
    status: CommandStatus
    detail: Annotated[str, StringConstraints(max_length=512)] | None = None
    progress_pct: Annotated[float, Field(ge=0, le=100)] | None = None


class Twin(Message):
    """Desired or reported configuration; ``version`` grows with every change."""

    version: Annotated[int, Field(ge=0)]
    config: dict[Name, Scalar]


Model = Annotated[str, StringConstraints(min_length=1, max_length=64)]


class BatchRecord(BaseModel):
    """One device message inside a gateway batch: channel, device, payload, receive time.

    ``m``: the device's model as the gateway knows it (its birth, or its credential
    update); ingest tags the stored reading with it, so the stored series depends
    only on the record (a redelivery lands on the same point).

    ``cs`` (clock suspect): the gateway found the reading's device time ``p.ts``
    implausible (docs/gateway.md, "Clock sanity"); the reading is stored at ``rx``
    with the device's time kept as ``device_ts`` and ``clock_suspect`` set
    (:func:`contract.codec.decode_batch_readings` does the swap). Absent: trust ``ts``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    ch: Literal["telemetry", "event"]
    dev: Id
    p: dict[str, Any]
    rx: TimestampMs
    m: Model | None = None
    cs: Literal[True] | None = None


class Batch(Message):
    """The gateway's uplink envelope; ``seq`` counts batches per gateway."""

    gw: Id
    seq: Seq
    records: list[BatchRecord]


def _tagged(generic: type[BaseModel]) -> Any:
    members = tuple(generic[Literal[kind.value], model] for kind, model in METRICS_BY_KIND.items())  # type: ignore[index]
    return Annotated[Union[members], Field(discriminator="kind")]  # noqa: UP007


AnyTelemetry = _tagged(Telemetry)
AnyEvent = _tagged(Event)
TELEMETRY: Final[TypeAdapter[Telemetry[Any, Any]]] = TypeAdapter(AnyTelemetry)
EVENT: Final[TypeAdapter[Event[Any, Any]]] = TypeAdapter(AnyEvent)


def telemetry(
    kind: DeviceKind | str, *, ts: int, seq: int, metrics: Metrics
) -> Telemetry[Any, Any]:
    """Build a validated telemetry message for ``kind``."""
    return TELEMETRY.validate_python(
        {"kind": str(kind), "ts": ts, "seq": seq, "metrics": metrics.model_dump(exclude_none=True)}
    )


def event(
    kind: DeviceKind | str,
    *,
    ts: int,
    seq: int,
    name: str,
    metrics: Metrics | None = None,
    detail: dict[str, Any] | None = None,
) -> Event[Any, Any]:
    """Build a validated event message for ``kind``."""
    data: dict[str, Any] = {"kind": str(kind), "ts": ts, "seq": seq, "name": name}
    if metrics is not None:
        data["metrics"] = metrics.model_dump(exclude_none=True)
    if detail is not None:
        data["detail"] = detail
    return EVENT.validate_python(data)
