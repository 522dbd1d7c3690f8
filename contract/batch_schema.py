"""A whole gateway envelope (or one reading) validated in one pydantic-core pass, into dicts.

Used by :func:`contract.codec.decode_batch_readings` and
:func:`contract.codec.decode_reading`. The schema is *derived* from the models
in :mod:`contract.messages` and :mod:`contract.metrics` (same fields, same
constraints, strict, unknown fields forbidden), so it cannot drift from them;
only the output differs: validated dicts instead of model instances, which is
what makes it cheaper (no model objects per reading). Two rules of the models
are not in this schema and are checked by the caller: a metrics set needs at
least one metric (``Metrics._not_empty``), and anything failing here is
re-validated by the models to get the same error and reason.
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal, NotRequired, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter
from typing_extensions import TypedDict

from contract.messages import Batch, BatchRecord, Event, Telemetry
from contract.metrics import METRICS_BY_KIND

_CONFIG: Final = ConfigDict(strict=True, extra="forbid")


def _typed_dict(name: str, fields: dict[str, Any]) -> Any:
    cls = TypedDict(name, fields)  # type: ignore[misc]
    cls.__pydantic_config__ = _CONFIG  # type: ignore[attr-defined]
    return cls


def _fields(model: type[BaseModel], **replace: Any) -> dict[str, Any]:
    """The model's fields as TypedDict items (optional ones NotRequired), some replaced.

    ``v`` is required: on the wire the schema version is never implied
    (:func:`contract.codec.decode` refuses a message without it).
    """
    out: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        annotation = replace.get(name, info.annotation)
        if name not in replace and info.metadata:
            annotation = Annotated[(annotation, *info.metadata)]
        required = info.is_required() or name == "v"
        out[name] = annotation if required else NotRequired[annotation]
    return out


def _readings(generic: type[BaseModel], channel: str) -> Any:
    members = []
    for kind, metrics_model in METRICS_BY_KIND.items():
        metrics = _typed_dict(f"{metrics_model.__name__}Dict", _fields(metrics_model))
        concrete = generic[Literal[kind.value], metrics_model]  # type: ignore[index]
        optional = not concrete.model_fields["metrics"].is_required()
        fields = _fields(
            concrete,
            kind=Literal[kind.value],
            metrics=metrics | None if optional else metrics,
        )
        members.append(_typed_dict(f"{channel}_{kind.value}", fields))
    return Annotated[Union[tuple(members)], Field(discriminator="kind")]  # noqa: UP007


_TELEMETRY: Final = _readings(Telemetry, "telemetry")
_EVENT: Final = _readings(Event, "event")
_TELEMETRY_RECORD: Final = _typed_dict(
    "TelemetryRecord", _fields(BatchRecord, ch=Literal["telemetry"], p=_TELEMETRY)
)
_EVENT_RECORD: Final = _typed_dict(
    "EventRecord", _fields(BatchRecord, ch=Literal["event"], p=_EVENT)
)
_RECORD: Final = Annotated[Union[_TELEMETRY_RECORD, _EVENT_RECORD], Field(discriminator="ch")]  # noqa: UP007
TYPED_BATCH: Final[TypeAdapter[dict[str, Any]]] = TypeAdapter(
    _typed_dict("TypedBatch", _fields(Batch, records=list[_RECORD]))  # type: ignore[valid-type]
)
TYPED_READINGS: Final[dict[str, TypeAdapter[dict[str, Any]]]] = {
    "telemetry": TypeAdapter(_TELEMETRY),
    "event": TypeAdapter(_EVENT),
}
"""One reading (a single telemetry or event message) by channel, into a plain dict."""
