"""Messages to InfluxDB line protocol, per DESIGN.md's storage section.

One measurement per family of kinds (``contract.metrics.measurement_for``);
tags ``centre``, ``device``, ``model``; fields = the metrics + ``seq`` (events
add ``event`` = the event name and ``detail`` as a JSON string); timestamp =
``contract.storage.storage_time_ns(ts, seq)`` in ns.

``model`` comes from the device's retained birth ``state`` (:class:`ModelCache`);
until one was seen it is ``unknown``.

Refused, to quarantine (never re-stamped, never stored as a reading):
- anything the contract refuses (``DecodeReason``), a topic outside the contract;
- a raw ``patient_id`` (only the gateway's pseudonym ``patient_ref`` may reach central);
- a device time older than ``max_age_s`` (default: the 90-day raw retention) or
  more than ``max_future_s`` ahead of ingest's clock: a gateway without a
  real-time clock; the original ``ts`` stays visible in the excerpt.

Speed: escaped tag prefixes are cached per (measurement, centre, device, model);
fields are formatted from a per-model table, without building point objects.
"""

from __future__ import annotations

import json
import threading
import time
import types
import typing
from collections.abc import Callable
from typing import Any, Final

from contract.codec import DecodeError, decode, decode_batch_readings
from contract.messages import BatchRecord
from contract.metrics import METRICS_BY_KIND, Metrics, measurement_for
from contract.storage import storage_time_ns
from contract.topics import Channel, Topic, TopicError
from ingest.quarantine import QuarantineLines, Reason, redact

UNKNOWN_MODEL: Final = "unknown"
QuarantineHook = Callable[[str], None]


def _escape_tag(value: str) -> str:
    return (
        value.replace("\\", "\\\\")
        .replace(",", "\\,")
        .replace("=", "\\=")
        .replace(" ", "\\ ")
        .replace("\n", "\\n")
    )


def _string_field(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def _kind_of(annotation: Any) -> str:
    args = set()
    for arg in typing.get_args(annotation) or (annotation,):
        if typing.get_origin(arg) is typing.Annotated:
            arg = typing.get_args(arg)[0]
        args.add(arg)
    args.discard(types.NoneType)
    if bool in args:
        return "b"
    if str in args:
        return "s"
    if int in args and float not in args:
        return "i"
    return "f"


def _field_table(model: type[Metrics]) -> tuple[tuple[str, str], ...]:
    return tuple(
        (name, _kind_of(info.annotation))
        for name, info in model.model_fields.items()
        if name != "patient_id"
    )


FIELD_TABLES: Final = {model: _field_table(model) for model in METRICS_BY_KIND.values()}
FIELD_KINDS: Final = {
    kind.value: dict(_field_table(model)) for kind, model in METRICS_BY_KIND.items()
}
MEASUREMENTS: Final = {kind.value: measurement_for(kind).value for kind in METRICS_BY_KIND}


class ModelCache:
    """Device model per (centre, device), from retained births; bounded, cleared when full."""

    def __init__(self, limit: int = 100_000) -> None:
        self._limit = limit
        self._models: dict[tuple[str, str], str] = {}
        self._lock = threading.Lock()

    def set(self, centre: str, device: str, model: str) -> None:
        with self._lock:
            if len(self._models) >= self._limit:
                self._models.clear()  # policy when full: forget all, births refill it
            self._models[(centre, device)] = model

    def get(self, centre: str, device: str) -> str:
        return self._models.get((centre, device), UNKNOWN_MODEL)

    def __len__(self) -> int:
        return len(self._models)


def format_fields(metrics: Metrics) -> str:
    """``name=value,...`` for the metrics present (ints as ``i``, floats always floats)."""
    return format_field_values(dict(FIELD_TABLES[type(metrics)]), metrics.__dict__)


def format_field_values(kinds: dict[str, str], values: dict[str, Any]) -> str:
    """The same from validated metric values (``FIELD_KINDS[kind]``); ``patient_id`` never."""
    parts = []
    for name, value in values.items():
        if value is None:
            continue
        kind = kinds.get(name)
        if kind == "f":
            parts.append(f"{name}={float(value)!r}")
        elif kind == "i":
            parts.append(f"{name}={value}i")
        elif kind == "b":
            parts.append(f"{name}={'true' if value else 'false'}")
        elif kind == "s":
            parts.append(f"{name}={_string_field(value)}")
    return ",".join(parts)


class PointBuilder:
    """Turns one MQTT message into lines (readings and quarantine points)."""

    def __init__(
        self,
        models: ModelCache,
        quarantine: QuarantineLines,
        *,
        max_age_s: float,
        max_future_s: float,
        on_quarantine: QuarantineHook | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._models = models
        self._quarantine = quarantine
        self._max_age_ms = int(max_age_s * 1000)
        self._max_future_ms = int(max_future_s * 1000)
        self._on_quarantine = on_quarantine
        self._clock = clock
        self._prefixes: dict[tuple[str, str, str, str], str] = {}

    def convert(self, topic: str, payload: bytes, out: list[str]) -> int:
        """Append the lines for one message to ``out``; returns the readings it carried."""
        try:
            where = Topic.parse(topic)
        except TopicError as exc:
            self._refuse(out, Reason.BAD_TOPIC, str(exc), topic, payload)
            return 0
        now_ms = int(self._clock() * 1000)
        if where.channel is Channel.GATEWAY_BATCH:
            return self._envelope(where, topic, payload, now_ms, out)
        if where.channel not in (Channel.TELEMETRY, Channel.EVENT):
            self._refuse(out, Reason.BAD_TOPIC, "not a reading channel", topic, payload, where)
            return 0
        try:
            reading = decode(where.channel, payload)
        except DecodeError as exc:
            self._refuse(out, exc.reason.value, exc.detail, topic, payload, where)
            return 0
        self._reading(where.centre, where.device, reading.__dict__, topic, payload, now_ms, out)
        return 1

    def _envelope(
        self, where: Topic, topic: str, payload: bytes, now_ms: int, out: list[str]
    ) -> int:
        try:
            batch = decode_batch_readings(payload)
        except DecodeError as exc:
            self._refuse(out, exc.reason.value, exc.detail, topic, payload, where)
            return 0
        centre = where.centre
        for record, error in batch.refused:
            self._refuse_record(out, error.reason.value, error.detail, topic, centre, record)
        reading = self._reading
        for _, device, values in batch.readings:
            reading(centre, device, values, topic, values, now_ms, out)
        return len(batch.readings) + len(batch.refused)

    def _reading(
        self,
        centre: str,
        device: str,
        values: dict[str, Any],
        topic: str,
        source: bytes | dict[str, Any],
        now_ms: int,
        out: list[str],
    ) -> None:
        """One validated reading (a model's ``__dict__`` or a dict from the contract)."""
        metrics = values.get("metrics")
        if metrics is not None:
            if not isinstance(metrics, dict):
                metrics = metrics.__dict__  # plain dict reads: pydantic's __getattr__ is slow
            if metrics.get("patient_id") is not None:
                detail = "a raw patient_id reached central (the gateway must pseudonymise it)"
                self._refuse_source(out, Reason.PATIENT_ID, detail, topic, centre, device, source)
                return
        ts = values["ts"]
        if ts < now_ms - self._max_age_ms:
            detail = f"ts {ts} older than {self._max_age_ms // 1000} s"
            self._refuse_source(out, Reason.TS_PAST, detail, topic, centre, device, source)
            return
        if ts > now_ms + self._max_future_ms:
            detail = f"ts {ts} more than {self._max_future_ms // 1000} s ahead"
            self._refuse_source(out, Reason.TS_FUTURE, detail, topic, centre, device, source)
            return
        model = self._models.get(centre, device)
        kind = values["kind"]
        key = (kind, centre, device, model)
        prefix = self._prefixes.get(key)
        if prefix is None:
            if len(self._prefixes) >= 200_000:
                self._prefixes.clear()  # bounded: rebuilt on demand
            measurement = MEASUREMENTS[kind]
            prefix = f"{measurement},centre={centre},device={device},model={_escape_tag(model)} "
            self._prefixes[key] = prefix
        fields = "" if metrics is None else format_field_values(FIELD_KINDS[kind], metrics)
        name = values.get("name")
        if name is not None:  # an event
            extra = f"event={_string_field(name)}"
            event_detail = values.get("detail")
            if event_detail:
                extra += f",detail={_string_field(json.dumps(event_detail, sort_keys=True))}"
            fields = f"{fields},{extra}" if fields else extra
        seq = values["seq"]
        sep = "," if fields else ""
        out.append(f"{prefix}{fields}{sep}seq={seq}i {storage_time_ns(ts, seq)}")

    def _refuse_source(
        self,
        out: list[str],
        reason: str,
        detail: str,
        topic: str,
        centre: str,
        device: str,
        source: bytes | dict[str, Any],
    ) -> None:
        if isinstance(source, dict):  # a reading from an envelope
            payload = redact(json.dumps(source, default=str).encode())
            self._emit(out, reason, detail, topic, payload, centre, device)
        else:
            self._refuse(
                out, reason, detail, topic, source, Topic(centre, device, Channel.TELEMETRY)
            )

    def _refuse_record(
        self, out: list[str], reason: str, detail: str, topic: str, centre: str, record: BatchRecord
    ) -> None:
        payload = redact(json.dumps(record.p, default=str).encode())
        self._emit(out, reason, detail, topic, payload, centre, record.dev)

    def _refuse(
        self,
        out: list[str],
        reason: str,
        detail: str,
        topic: str,
        payload: bytes,
        where: Topic | None = None,
    ) -> None:
        centre = where.centre if where else None
        device = where.device if where else None
        self._emit(out, reason, detail, topic, payload, centre, device)

    def _emit(
        self,
        out: list[str],
        reason: str,
        detail: str,
        topic: str,
        payload: bytes,
        centre: str | None,
        device: str | None,
    ) -> None:
        out.append(
            self._quarantine.line(
                reason, detail=detail, topic=topic, payload=payload, centre=centre, device=device
            )
        )
        if self._on_quarantine is not None:
            self._on_quarantine(reason)
