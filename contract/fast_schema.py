"""Readings and gateway envelopes decoded in one msgspec pass, into plain dicts.

The first pass of :func:`contract.codec.decode_reading` and
:func:`contract.codec.decode_batch_readings`: msgspec parses and validates a
whole message into structs and the structs become the dicts those functions
return, with the keys in the models' order (what ingest's line cache keys on).
The structs are *derived* at import from the pydantic models in
:mod:`contract.messages` and :mod:`contract.metrics` (same fields, same bounds,
patterns and lengths, strict types, unknown fields forbidden; an envelope's
ids are checked against their pattern just after the pass, once per id:
:class:`BatchDecoder`); a constraint this module cannot express stops the
import (:class:`UnmappedConstraint`) rather than being dropped.

This pass may refuse more than the models (msgspec's JSON has no ``NaN`` and
refuses numbers out of a float's range), never less: whatever it refuses, the
caller validates again with the models, which decide the verdict and the error.
Two rules stay with the caller, as before: a metrics set needs at least one
metric, and a clock-suspect flag ``cs`` must be ``true`` (msgspec's literals
take no booleans: ``cs`` is decoded as a bool and ``decode_batch_readings`` refuses
``false``).
"""

from __future__ import annotations

import operator
import re
import types
from collections.abc import Callable
from typing import Annotated, Any, Final, Literal, Union, get_args, get_origin

import annotated_types
import msgspec
from pydantic import BaseModel, StringConstraints
from pydantic.fields import FieldInfo

from contract.messages import Batch, BatchRecord, Event, Telemetry
from contract.metrics import METRICS_BY_KIND

UNSET: Final = msgspec.UNSET
Builder = Callable[[Any], dict[str, Any]]


class UnmappedConstraint(TypeError):
    """A model's field constraint or type that has no msgspec equivalent here."""


_BOUNDS: Final = {
    annotated_types.Ge: "ge",
    annotated_types.Le: "le",
    annotated_types.Gt: "gt",
    annotated_types.Lt: "lt",
}


def _anchored(pattern: str) -> str:
    # pydantic's regex engine: ``$`` is the end of the string; Python's ``re`` also
    # matches ``$`` before a final newline
    if pattern.endswith("$") and not pattern.endswith("\\$"):
        return pattern[:-1] + r"\Z"
    return pattern


def _meta(items: list[Any], where: str) -> dict[str, Any]:
    """msgspec.Meta keywords for pydantic/annotated-types metadata (raises on others)."""
    out: dict[str, Any] = {}
    for item in items:
        if type(item) in _BOUNDS:
            key = _BOUNDS[type(item)]
            out[key] = getattr(item, key)
        elif isinstance(item, StringConstraints):
            unsupported = {
                name: value
                for name, value in vars(item).items()
                if name not in ("pattern", "min_length", "max_length") and value is not None
            }
            if unsupported:
                raise UnmappedConstraint(f"{where}: {unsupported}")
            if item.pattern is not None:
                out["pattern"] = _anchored(str(item.pattern))
            if item.min_length is not None:
                out["min_length"] = item.min_length
            if item.max_length is not None:
                out["max_length"] = item.max_length
        elif isinstance(item, FieldInfo):
            out |= _meta(item.metadata, where)
        else:
            raise UnmappedConstraint(f"{where}: {item!r}")
    return out


def _type(annotation: Any, where: str, metadata: list[Any] | None = None) -> Any:
    """The msgspec type for a pydantic field's annotation (and its field metadata)."""
    if metadata:
        meta = _meta(metadata, where)
        base = _type(annotation, where)
        return Annotated[base, msgspec.Meta(**meta)] if meta else base
    origin = get_origin(annotation)
    if origin is Annotated:
        base, *extras = get_args(annotation)
        return _type(base, where, extras)
    if origin in (Union, types.UnionType):
        return Union[tuple(_type(arg, where) for arg in get_args(annotation))]  # noqa: UP007
    if origin is dict:
        key, value = get_args(annotation)
        return dict[_type(key, where), _type(value, where)]  # type: ignore[misc]
    if origin is Literal:
        values = get_args(annotation)
        if any(isinstance(v, bool) for v in values):
            raise UnmappedConstraint(f"{where}: msgspec literals take no booleans: {values}")
        return annotation
    if annotation in (int, float, bool, str, type(None)):
        return annotation
    raise UnmappedConstraint(f"{where}: {annotation!r}")


def _struct(
    name: str,
    model: type[BaseModel],
    replace: dict[str, Any] | None = None,
    *,
    tag_field: str | None = None,
    tag: str | None = None,
) -> type[msgspec.Struct]:
    """A struct with ``model``'s fields (``replace``: some given), unknown fields forbidden.

    Optional fields default to UNSET, so a field absent from the message is told from
    one sent as null (the dicts keep only what was sent, as the models' dumps do not).
    ``v`` is required: on the wire the schema version is never implied.
    """
    replace = replace or {}
    fields: list[tuple[str, Any] | tuple[str, Any, Any]] = []
    for field_name, info in model.model_fields.items():
        if field_name == tag_field:
            continue  # the union's tag: msgspec checks it, the builder writes it
        if info.alias is not None and info.alias != field_name:
            raise UnmappedConstraint(f"{model.__name__}.{field_name}: alias {info.alias!r}")
        where = f"{model.__name__}.{field_name}"
        if field_name in replace:
            kind = replace[field_name]
        else:
            kind = _type(info.annotation, where, info.metadata)
        if info.is_required() or field_name == "v":
            fields.append((field_name, kind))
        else:
            fields.append((field_name, kind | msgspec.UnsetType, UNSET))
    options: dict[str, Any] = {"forbid_unknown_fields": True}
    if tag_field is not None:
        options |= {"tag_field": tag_field, "tag": tag}
    return msgspec.defstruct(name, fields, **options)  # type: ignore[arg-type]


def _compiled(name: str, lines: list[str], **scope: Any) -> Builder:
    """A builder function from its source lines (a generic loop over the fields costs
    four times as much per reading)."""
    namespace: dict[str, Any] = {"UNSET": UNSET, **scope}
    exec("\n".join(lines), namespace)  # the names in it are the models' own fields
    return namespace[name]  # type: ignore[no-any-return]


def _set_fields(fields: tuple[str, ...], source: str, target: str) -> list[str]:
    """Source lines copying the set fields of ``source`` into the dict ``target``."""
    lines = []
    for field in fields:
        if not field.isidentifier():
            raise UnmappedConstraint(f"field name {field!r}")
        lines += [
            f"    v = {source}.{field}",
            f"    if v is not UNSET: {target}[{field!r}] = v",
        ]
    return lines


def _reading_dict(struct: type[msgspec.Struct], kind: str, metrics: tuple[str, ...]) -> Builder:
    """The dict of a reading struct: ``kind`` in the model's place, the fields sent, and
    ``metrics`` a dict of the metrics sent (null ones too) in the model's order."""
    fields = struct.__struct_fields__
    if fields[0] != "v":
        raise UnmappedConstraint(f"{struct.__name__}: fields must begin with v")
    required = fields[: len(fields) - len(struct.__struct_defaults__)]  # then the optional
    lines = ["def build(r):", f"    out = {{'v': r.v, 'kind': {kind!r}}}"]
    for field in fields[1:]:
        if field == "metrics":
            lines += [
                "    m = r.metrics",
                "    if m is None: out['metrics'] = None",
                "    elif m is not UNSET:",
                "        d = {}",
                *("    " + line for line in _set_fields(metrics, "m", "d")),
                "        out['metrics'] = d",
            ]
        elif field in required:
            lines.append(f"    out[{field!r}] = r.{field}")
        else:
            lines += _set_fields((field,), "r", "out")
    return _compiled("build", [*lines, "    return out"])


KINDS: Final[dict[type, str]] = {}
"""The device kind of every reading struct (its union tag), by its type."""

PATIENT_FIELDS: Final = frozenset({"patient_id", "patient_ref"})
WITH_PATIENT: Final[set[type]] = set()
"""The reading structs whose metrics may name a patient (``PATIENT_FIELDS``). No other
reading's metrics can hold one: their structs have no such field, and the contract
refuses a metric it does not know."""


def _readings(generic: type[BaseModel], channel: str) -> tuple[Any, dict[type, Builder]]:
    """The tagged union of ``channel``'s reading structs, one per kind, and their builders."""
    members: list[type[msgspec.Struct]] = []
    builders: dict[type, Builder] = {}
    for kind, metrics_model in METRICS_BY_KIND.items():
        metrics = _struct(f"{metrics_model.__name__}Struct", metrics_model)
        concrete = generic[Literal[kind.value], metrics_model]  # type: ignore[index]
        optional = not concrete.model_fields["metrics"].is_required()
        reading = _struct(
            f"{channel}_{kind.value}",
            concrete,
            {"metrics": metrics | None if optional else metrics},
            tag_field="kind",
            tag=kind.value,
        )
        members.append(reading)
        builders[reading] = _reading_dict(reading, kind.value, metrics.__struct_fields__)
        KINDS[reading] = kind.value
        if PATIENT_FIELDS & set(metrics.__struct_fields__):
            WITH_PATIENT.add(reading)
    if list(generic.model_fields)[:2] != ["v", "kind"]:
        raise UnmappedConstraint(f"{generic.__name__}: fields must begin with v, kind")
    return Union[tuple(members)], builders  # noqa: UP007


_TELEMETRY, _TELEMETRY_BUILDERS = _readings(Telemetry, "telemetry")
_EVENT, _EVENT_BUILDERS = _readings(Event, "event")
BUILDERS: Final[dict[type, Builder]] = {**_TELEMETRY_BUILDERS, **_EVENT_BUILDERS}
"""The dict builder of every reading struct, by its type."""

READINGS: Final[dict[str, msgspec.json.Decoder[Any]]] = {
    "telemetry": msgspec.json.Decoder(_TELEMETRY),
    "event": msgspec.json.Decoder(_EVENT),
}
"""One reading (a single telemetry or event message) by channel, into a reading struct."""

_CS: Final = bool  # ``Literal[True]`` in the model: ``false`` is refused by the caller
if BatchRecord.model_fields["cs"].annotation != Literal[True] | None:
    raise UnmappedConstraint("BatchRecord.cs: expected Literal[True] | None")


def _pattern_only(model: type[BaseModel], field_name: str) -> re.Pattern[str]:
    """The pattern of a str field constrained by nothing else, compiled."""
    info = model.model_fields[field_name]
    where = f"{model.__name__}.{field_name}"
    annotation, metadata = info.annotation, list(info.metadata)
    if get_origin(annotation) is Annotated:
        annotation, *extras = get_args(annotation)
        metadata += extras
    meta = _meta(metadata, where)
    if annotation is not str or set(meta) != {"pattern"}:
        raise UnmappedConstraint(f"{where}: expected a str with a pattern only")
    return re.compile(meta["pattern"])


_ID_PATTERN: Final = _pattern_only(BatchRecord, "dev")
if _pattern_only(Batch, "gw").pattern != _ID_PATTERN.pattern:
    raise UnmappedConstraint("Batch.gw and BatchRecord.dev: expected one id pattern")
_TELEMETRY_RECORD: Final = _struct(
    "TelemetryRecord",
    BatchRecord,
    {"p": _TELEMETRY, "cs": _CS | None, "dev": str},  # the ids' pattern: BatchDecoder
    tag_field="ch",
    tag="telemetry",
)
_EVENT_RECORD: Final = _struct(
    "EventRecord",
    BatchRecord,
    {"p": _EVENT, "cs": _CS | None, "dev": str},
    tag_field="ch",
    tag="event",
)
_RECORD: Final = Union[_TELEMETRY_RECORD, _EVENT_RECORD]  # noqa: UP007
_DEV: Final = operator.attrgetter("dev")


class BatchDecoder:
    """msgspec's pass over a whole envelope, then its ids (``gw``, each record's ``dev``)
    checked against their pattern once per distinct id.

    msgspec checks a pattern by calling the regex for every record, which cost more than
    a third of the pass (docs/performance.md); an envelope holds the readings of a few
    devices, and an id that passed once is remembered (up to ``limit``, then forgotten).
    """

    def __init__(self, limit: int = 100_000) -> None:
        self._decoder: msgspec.json.Decoder[Any] = msgspec.json.Decoder(
            _struct("BatchStruct", Batch, {"records": list[_RECORD], "gw": str})  # type: ignore[valid-type]
        )
        self._known: set[str] = set()
        self._limit = limit

    def decode(self, raw: bytes) -> Any:
        """The envelope's structs; raises ``msgspec.ValidationError`` as msgspec would."""
        batch = self._decoder.decode(raw)
        known = self._known
        new = set(map(_DEV, batch.records))
        new.add(batch.gw)
        new -= known
        if new:
            search = _ID_PATTERN.search
            for value in new:
                if search(value) is None:
                    raise msgspec.ValidationError(
                        f"Expected `str` matching regex {_ID_PATTERN.pattern!r}"
                        " - at `$.gw` or `$.records[...].dev`"
                    )
            if len(known) + len(new) > self._limit:
                known.clear()
            known |= new
        return batch


BATCH: Final = BatchDecoder()
"""A whole gateway envelope (inflated), into structs: ``gw``, ``seq``, ``records``, each
record with ``dev``, ``p`` (a reading struct), ``rx``, ``m`` and ``cs`` (UNSET: absent)."""

RECORD_CHANNELS: Final[dict[type, str]] = {_TELEMETRY_RECORD: "telemetry", _EVENT_RECORD: "event"}
"""A record struct's channel (``ch``), by its type."""
