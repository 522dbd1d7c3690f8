"""Messages to InfluxDB line protocol, per DESIGN.md's storage section.

One measurement per family of kinds (``contract.metrics.measurement_for``);
tags ``centre``, ``device``, ``model``; fields = the metrics + ``seq`` (events
add ``event`` = the event name and ``detail`` as a JSON string); timestamp =
``contract.storage.storage_time_ns(ts, seq)`` in ns.

``model`` depends only on the message, so a reading stored twice (a gateway
resending a batch whose receipt it did not get, after an ingest restart) lands
on the same point: a gateway envelope's record carries its device's model
(``BatchRecord.m``, stamped by the gateway from the API's registry or the
device's birth); a record without one, and every reading a device publishes
directly, is stored under ``model=unknown`` (docs/architecture.md, "Delivery,
as built"). The retained births (:class:`ModelCache`) still give the device's
``kind``: the kind its readings must have.

A gateway envelope record flagged clock-suspect (``BatchRecord.cs``) is stored
at its receive time, with the device's own time as the field ``device_ts`` (ms)
and ``clock_suspect=true`` (``contract.codec.at_receive_time``).

Refused, to quarantine (never re-stamped, never stored as a reading):
- anything the contract refuses (``DecodeReason``), a topic outside the contract;
- a raw ``patient_id`` (only the gateway's pseudonym ``patient_ref`` may reach central);
- a reading of another kind than its device's birth said (``kind_mismatch``: a
  ``router`` reading on a power unit's topic would otherwise be stored under the
  power unit in the ``router`` measurement); a device without a birth seen yet
  is not checked (ingest has no registry: an unprovisioned device is refused by
  the central broker's ACL, or by its centre's gateway as ``unknown_device``);
- a device time older than ``max_age_s`` (default: the 90-day raw retention) or
  more than ``max_future_s`` ahead of ingest's clock: a gateway without a
  real-time clock; the original ``ts`` stays visible in the excerpt.

A message whose conversion raises an exception nobody expected (a bug) is
quarantined as ``internal_error`` (exception type and message; for an envelope,
only the record that raised), so it is acknowledged with its batch and the
worker goes on instead of dying and being handed the same message again.
Quarantines are logged rate-limited per reason (``runtime.logs.Throttle``).

Speed (``bench/convert.py``; docs/performance.md): readings are validated into
plain dicts (``contract.codec.decode_reading``, ``decode_batch_readings``), not
models, and a message that passed the one-pass validation is read from its
msgspec structs, a dict made only for a reading that goes the long way
(:meth:`PointBuilder._fast` for one reading, :meth:`PointBuilder._envelope_structs`
for an envelope's); a topic is parsed once; per (centre, device) the escaped tag
prefix per kind, and per (kind, metric names) a compiled f-string writing the
whole line (:func:`compile_line`), are cached. A birth that changes a device's
model or kind makes ingest forget that device's entries
(``ModelCache.changes_since``). A reading whose line is cached and that none of
the checks above refuses goes that short way; every other reading the long way
(``_reading``), which fills the caches. The lines are byte-identical either
way (``tests/ingest/test_convert_golden.py``). With every reading line goes a
note for the sequence ledger (``ingest.sequences.Note``: device, seq, device
time), so the ledger never parses the lines back.
"""

from __future__ import annotations

import collections
import json
import logging
import re
import threading
import time
import types
import typing
from collections.abc import Callable
from typing import Any, Final

import msgspec

from contract import fast_schema
from contract.admission import Refusal, internal_error_detail, mismatch_detail
from contract.codec import (
    DecodeError,
    decode_batch_readings,
    decode_batch_structs,
    decode_reading_struct,
    reading_of_struct,
    record_reading,
    refused_by_models,
)
from contract.messages import BatchRecord
from contract.metrics import METRICS_BY_KIND, Metrics, measurement_for
from contract.storage import SEQ_SLOTS
from contract.topics import Channel, Topic, TopicError
from ingest.quarantine import QuarantineLines, Reason
from ingest.sequences import READING_MEASUREMENTS, Key, Note
from runtime.logs import Throttle, kv

log = logging.getLogger("ingest.points")
UNKNOWN_MODEL: Final = "unknown"
_NO_PROFILE: Final[tuple[str, str | None]] = (UNKNOWN_MODEL, None)
_CHANGE_LOG: Final = 4096  # profile changes remembered for changes_since
QuarantineHook = Callable[[str], None]
EnvelopeHook = Callable[[str, str, int], None]  # (centre, gateway, seq) converted


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
    """Device model and kind per (centre, device), from retained births; bounded.

    Policy when full: forget all (the births of devices still publishing refill it).
    """

    def __init__(self, limit: int = 100_000) -> None:
        self._limit = limit
        self._profiles: dict[tuple[str, str], tuple[str, str | None]] = {}
        self._lock = threading.Lock()
        # grows with every change: whoever caches what a profile implies checks it
        # and asks :meth:`changes_since` which devices to forget
        self.generation = 0
        self._changes: collections.deque[tuple[int, tuple[str, str]]] = collections.deque()
        self._complete_since = 0  # changes after this generation are all in _changes

    def learn(self, centre: str, device: str, model: str | None, kind: str | None) -> None:
        """What a birth says; a value it leaves out (a Last Will says neither) is kept."""
        if model is None and kind is None:
            return
        key = (centre, device)
        with self._lock:
            old_model, old_kind = self._profiles.get(key, _NO_PROFILE)
            profile = (model or old_model, kind or old_kind)
            if len(self._profiles) >= self._limit and key not in self._profiles:
                self._profiles.clear()
                self.generation += 1
                self._changes.clear()
                self._complete_since = self.generation
            if self._profiles.get(key) != profile:
                self._profiles[key] = profile
                self.generation += 1
                self._changes.append((self.generation, key))
                if len(self._changes) > _CHANGE_LOG:
                    self._complete_since = self._changes.popleft()[0]

    def changes_since(self, generation: int) -> list[tuple[str, str]] | None:
        """The (centre, device) whose profile changed after ``generation``; None: too many."""
        with self._lock:
            if generation < self._complete_since:
                return None
            return [key for changed, key in self._changes if changed > generation]

    def set(self, centre: str, device: str, model: str) -> None:
        self.learn(centre, device, model, None)

    def get(self, centre: str, device: str) -> str:
        return self._profiles.get((centre, device), _NO_PROFILE)[0]

    def profile(self, centre: str, device: str) -> tuple[str, str | None]:
        """``(model, kind)``: ``unknown`` and None until a birth said them."""
        return self._profiles.get((centre, device), _NO_PROFILE)

    def __len__(self) -> int:
        return len(self._profiles)


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


_BOOLS: Final = {True: "true", False: "false"}
_FIELD_NAME: Final = re.compile(r"[a-z][a-z0-9_]*")
_CACHE_LIMIT: Final = 200_000  # entries per cache; a full cache is emptied and refills
LineMaker = Callable[[str, dict[str, Any], int, int], str]
"""``(prefix, metrics, seq, time_ns) -> line`` for readings with one set of metric names."""


def compile_line(kinds: dict[str, str], names: tuple[str, ...]) -> LineMaker | None:
    """A function writing the line of a reading with exactly the metrics ``names``, in order.

    The same text as ``prefix + format_field_values(kinds, metrics)`` plus ``seq``
    and the time, for metrics dicts with these keys and no None value; one
    f-string, without a loop over the fields. None if a name has no field
    (``patient_id``) or is not a plain identifier.
    """
    parts = []
    for name in names:
        kind = kinds.get(name)
        if kind is None or _FIELD_NAME.fullmatch(name) is None:
            return None
        value = f'm["{name}"]'
        if kind == "f":
            parts.append(f"{name}={{{value}!r}}")  # floats: validated as float
        elif kind == "i":
            parts.append(f"{name}={{{value}}}i")
        elif kind == "b":
            parts.append(f"{name}={{bools[{value}]}}")
        else:
            parts.append(f"{name}={{string_field({value})}}")
    parts.append("seq={seq}i {t}")
    template = "{prefix}" + ",".join(parts)
    source = (
        "def line(prefix, m, seq, t, bools=bools, string_field=string_field):\n"
        f"    return f'{template}'\n"
    )
    scope: dict[str, Any] = {"bools": _BOOLS, "string_field": _string_field}
    exec(source, scope)  # names checked above; values are arguments
    maker: LineMaker = scope["line"]
    return maker


class _Line(typing.NamedTuple):
    prefix: str
    make: LineMaker
    key: Key | None  # (centre, device) for the sequence ledger; None: not accounted


# keys: (kind, the record's model or None, metric names) and (kind, model or None)
_NO_LINES: Final[dict[tuple[str, str | None, tuple[str, ...]], _Line]] = {}
_NO_PREFIXES: Final[dict[tuple[str, str | None], str]] = {}


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
        on_envelope: EnvelopeHook | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._models = models
        self._quarantine = quarantine
        self._max_age_ms = int(max_age_s * 1000)
        self._max_future_ms = int(max_future_s * 1000)
        self._on_quarantine = on_quarantine
        self._on_envelope = on_envelope
        self._clock = clock
        # per (centre, device), forgotten when its profile changes (a birth):
        # the escaped ``measurement,tags `` per kind its readings may have, and
        # (prefix, line maker) per (kind, metric names) for :meth:`_fast`
        self._prefixes: dict[tuple[str, str], dict[tuple[str, str | None], str]] = {}
        self._lines: dict[
            tuple[str, str], dict[tuple[str, str | None, tuple[str, ...]], _Line]
        ] = {}
        self._generation = self._models.generation
        self._makers: dict[tuple[str, tuple[str, ...]], LineMaker | None] = {}
        self._topics: dict[str, Topic] = {}
        self._throttle = Throttle(log)
        self.internal_errors = 0

    def convert(
        self, topic: str, payload: bytes, out: list[str], notes: list[Note] | None = None
    ) -> int:
        """Append the lines for one message to ``out``; returns the readings it carried.

        ``notes`` gets one :data:`~ingest.sequences.Note` per reading line, for the
        sequence ledger (what the line says, so the ledger never parses it).
        Never raises: a message whose conversion fails unexpectedly ends as one
        ``internal_error`` quarantine line instead of any lines it began.
        """
        if notes is None:
            notes = []
        mark, noted = len(out), len(notes)
        try:
            return self._convert(topic, payload, out, notes)
        except Exception as exc:  # one poison message: set it aside, never stop the worker
            del out[mark:]
            del notes[noted:]
            where = _topic_or_none(topic)
            self._internal_error(out, exc, topic, where, payload)
            return 0

    def _convert(self, topic: str, payload: bytes, out: list[str], notes: list[Note]) -> int:
        where = self._topics.get(topic)
        if where is None:
            try:
                where = Topic.parse(topic)
            except TopicError as exc:
                self._refuse(out, Reason.BAD_TOPIC, str(exc), topic, payload)
                return 0
            if len(self._topics) >= _CACHE_LIMIT:
                self._topics.clear()
            self._topics[topic] = where
        generation = self._models.generation
        if generation != self._generation:  # a birth changed a model or kind
            self._forget(generation)
        now_ms = int(self._clock() * 1000)
        if where.channel is Channel.GATEWAY_BATCH:
            return self._envelope(where, topic, payload, now_ms, out, notes)
        if where.channel not in (Channel.TELEMETRY, Channel.EVENT):
            self._refuse(out, Reason.BAD_TOPIC, "not a reading channel", topic, payload, where)
            return 0
        try:
            struct = decode_reading_struct(where.channel, payload)
            if (
                where.channel is Channel.TELEMETRY
                and struct is not None
                and self._fast(where.centre, where.device, struct, payload, now_ms, out, notes)
            ):
                return 1
            reading = reading_of_struct(where.channel, struct, payload)
        except DecodeError as exc:
            self._refuse(out, exc.reason.value, exc.detail, topic, payload, where)
            return 0
        self._reading(where.centre, where.device, reading, topic, payload, now_ms, out, notes, None)
        return 1

    def _forget(self, generation: int) -> None:
        """Forget what was cached for the devices whose profile changed since last time."""
        changed = self._models.changes_since(self._generation)
        if changed is None:
            self._prefixes.clear()
            self._lines.clear()
        else:
            for key in changed:
                self._prefixes.pop(key, None)
                self._lines.pop(key, None)
        self._generation = generation

    def _fast(
        self,
        centre: str,
        device: str,
        struct: Any,
        payload: bytes,
        now_ms: int,
        out: list[str],
        notes: list[Note],
    ) -> bool:
        """Write the line of a telemetry reading like one already stored, from its struct
        (no dict of the reading), without a check failing. False (nothing written) for
        any other reading.

        A reading whose device, kind and metric names were seen in a reading that
        passed :meth:`_reading` (so its kind is the device's), with no null metric and
        a plausible ``ts``: the same line :meth:`_reading` would write, and its note.
        (Inlined in :meth:`_envelope_structs`.)
        """
        m = struct.metrics
        if m is None or m is msgspec.UNSET:
            return False
        metrics = msgspec.to_builtins(m)  # the metrics sent, in the model's order
        ts = struct.ts
        if (
            not metrics  # the models refuse an empty set
            or (b"null" in payload and None in metrics.values())
            or ts < now_ms - self._max_age_ms
            or ts > now_ms + self._max_future_ms
        ):
            return False
        # names with ``patient_id`` never have a line (compile_line): the long way refuses them
        line = self._lines.get((centre, device), _NO_LINES).get(
            (fast_schema.KINDS[type(struct)], None, tuple(metrics))
        )
        if line is None:
            return False
        seq = struct.seq
        text = line.make(line.prefix, metrics, seq, ts * SEQ_SLOTS + seq % SEQ_SLOTS)
        out.append(text)
        notes.append((text, line.key, seq, ts))
        return True

    def _envelope(
        self,
        where: Topic,
        topic: str,
        payload: bytes,
        now_ms: int,
        out: list[str],
        notes: list[Note],
    ) -> int:
        """An envelope's lines: from its msgspec structs when it passed the one-pass
        validation (:meth:`_envelope_structs`), else the models' way (dicts)."""
        try:
            typed = decode_batch_structs(payload)
        except DecodeError as exc:
            self._refuse(out, exc.reason.value, exc.detail, topic, payload, where)
            return 0
        if typed is not None:
            batch = typed.batch
            count = self._envelope_structs(
                where.centre, topic, batch.records, now_ms, out, notes, typed.nulls
            )
            if count is not None:
                if self._on_envelope is not None:
                    self._on_envelope(where.centre, batch.gw, batch.seq)
                return count
        return self._envelope_dicts(where, topic, payload, now_ms, out, notes)

    def _envelope_structs(
        self,
        centre: str,
        topic: str,
        records: list[Any],
        now_ms: int,
        out: list[str],
        notes: list[Note],
        nulls: bool = True,
    ) -> int | None:
        """The lines of an envelope's records, from their structs: a reading like one
        already stored gets its line without a dict (:meth:`_fast`, inlined); any other
        goes :meth:`_reading` with the dict the models' way would give it. None (and
        nothing written) when a record holds what the models refuse (a metrics set
        without a metric, ``"cs": false``): the caller goes the models' way. ``nulls``:
        the envelope's JSON may hold a null (else no metric is None)."""
        mark, noted = len(out), len(notes)
        reading, lines, append, note = self._reading, self._lines, out.append, notes.append
        kinds, channels = fast_schema.KINDS, fast_schema.RECORD_CHANNELS
        unset, as_dict = msgspec.UNSET, msgspec.to_builtins
        known: dict[str, dict[tuple[str, str | None, tuple[str, ...]], _Line]] = {}
        oldest, newest = now_ms - self._max_age_ms, now_ms + self._max_future_ms
        for r in records:
            p, cs = r.p, r.cs
            m = p.metrics
            metrics = None if m is unset or m is None else as_dict(m)
            if refused_by_models(metrics, cs, nulls):
                break
            model = None if r.m is unset else r.m
            device = r.dev
            try:
                ts = p.ts
                if (
                    metrics is not None
                    and cs is not True  # clock suspect: the long way
                    and oldest <= ts <= newest
                    and channels[type(r)] == "telemetry"
                    and (not nulls or None not in metrics.values())
                ):
                    by_names = known.get(device)  # the device's lines, found once
                    if by_names is None:
                        by_names = lines.get((centre, device))
                        if by_names is None:
                            by_names = _NO_LINES  # not kept: _reading may make some
                        else:
                            known[device] = by_names
                    line = by_names.get((kinds[type(p)], model, tuple(metrics)))
                    if line is not None:
                        seq = p.seq
                        text = line.make(
                            line.prefix, metrics, seq, ts * SEQ_SLOTS + seq % SEQ_SLOTS
                        )
                        append(text)
                        note((text, line.key, seq, ts))
                        continue
                values = record_reading(r)
                reading(centre, device, values, topic, values, now_ms, out, notes, model)
            except Exception as exc:  # one poison record: set it aside, go on with the next
                where = Topic(centre, device, Channel.TELEMETRY)
                self._internal_error(out, exc, topic, where, _json_or_repr(record_reading(r)))
        else:
            return len(records)
        del out[mark:]
        del notes[noted:]
        return None

    def _envelope_dicts(
        self,
        where: Topic,
        topic: str,
        payload: bytes,
        now_ms: int,
        out: list[str],
        notes: list[Note],
    ) -> int:
        """An envelope the models judge record by record (one holds what they refuse):
        its refused records quarantined, every other the long way (:meth:`_reading`,
        the same lines as the short way; such envelopes are few)."""
        try:
            batch = decode_batch_readings(payload)
        except DecodeError as exc:
            self._refuse(out, exc.reason.value, exc.detail, topic, payload, where)
            return 0
        centre = where.centre
        for record, error in batch.refused:
            self._refuse_record(out, error.reason.value, error.detail, topic, centre, record)
        models = batch.models or [None] * len(batch.readings)
        for (_, device, values), model in zip(batch.readings, models, strict=True):
            try:
                self._reading(centre, device, values, topic, values, now_ms, out, notes, model)
            except Exception as exc:  # one poison record: set it aside, go on with the next
                where = Topic(centre, device, Channel.TELEMETRY)
                self._internal_error(out, exc, topic, where, _json_or_repr(values))
        if self._on_envelope is not None:
            self._on_envelope(centre, batch.gw, batch.seq)
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
        notes: list[Note],
        model: str | None,
    ) -> None:
        """One validated reading, a dict from the contract (``decode_reading``, an envelope);
        ``model``: what its envelope record says (None: ``unknown``)."""
        metrics = values.get("metrics")
        if metrics is not None and metrics.get("patient_id") is not None:
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
        kind = values["kind"]
        prefix = self._prefixes.get((centre, device), _NO_PREFIXES).get((kind, model))
        if prefix is None:
            prefix, born_kind = self._prefix(centre, device, kind, model)
            if prefix is None:
                detail = mismatch_detail(device, kind, born_kind or "")
                self._refuse_source(
                    out, Refusal.KIND_MISMATCH, detail, topic, centre, device, source
                )
                return
        seq = values["seq"]
        time_ns = ts * SEQ_SLOTS + seq % SEQ_SLOTS  # contract.storage.storage_time_ns
        device_ts = values.get("device_ts")  # a clock-suspect record, stored at its rx
        key = (centre, device) if MEASUREMENTS[kind] in READING_MEASUREMENTS else None
        if (
            metrics is not None
            and "name" not in values
            and device_ts is None
            and None not in metrics.values()
        ):
            names = tuple(metrics)
            make = self._maker(kind, names)
            if make is not None:
                if len(self._lines) >= _CACHE_LIMIT:
                    self._lines.clear()
                lines = self._lines.setdefault((centre, device), {})
                lines[(kind, model, names)] = _Line(prefix, make, key)
                text = make(prefix, metrics, seq, time_ns)
                out.append(text)
                notes.append((text, key, seq, ts))
                return
        fields = "" if metrics is None else format_field_values(FIELD_KINDS[kind], metrics)
        name = values.get("name")
        if name is not None:  # an event
            extra = f"event={_string_field(name)}"
            event_detail = values.get("detail")
            if event_detail:
                extra += f",detail={_string_field(json.dumps(event_detail, sort_keys=True))}"
            fields = f"{fields},{extra}" if fields else extra
        if device_ts is not None:
            extra = f"device_ts={device_ts}i,clock_suspect=true"
            fields = f"{fields},{extra}" if fields else extra
        sep = "," if fields else ""
        text = f"{prefix}{fields}{sep}seq={seq}i {time_ns}"
        out.append(text)
        notes.append((text, key, seq, ts))

    def _prefix(
        self, centre: str, device: str, kind: str, model: str | None
    ) -> tuple[str | None, str | None]:
        """``(measurement,tags , born kind)``; no prefix if the device was born another kind.

        The ``model`` tag is the record's ``model`` (None: ``unknown``), never the birth's.
        """
        born_kind = self._models.profile(centre, device)[1]
        if born_kind is not None and kind != born_kind:
            return None, born_kind
        if len(self._prefixes) >= _CACHE_LIMIT:
            self._prefixes.clear()
        measurement = MEASUREMENTS[kind]
        tag = _escape_tag(UNKNOWN_MODEL if model is None else model)
        prefix = f"{measurement},centre={centre},device={device},model={tag} "
        self._prefixes.setdefault((centre, device), {})[(kind, model)] = prefix
        return prefix, born_kind

    def _maker(self, kind: str, names: tuple[str, ...]) -> LineMaker | None:
        """The compiled line maker of ``names`` (shared by every device of ``kind``)."""
        key = (kind, names)
        if key not in self._makers:
            if len(self._makers) >= _CACHE_LIMIT:
                self._makers.clear()
            self._makers[key] = compile_line(FIELD_KINDS[kind], names)
        return self._makers[key]

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
            self._emit(out, reason, detail, topic, _json_or_repr(source), centre, device)
        else:
            self._refuse(
                out, reason, detail, topic, source, Topic(centre, device, Channel.TELEMETRY)
            )

    def _refuse_record(
        self, out: list[str], reason: str, detail: str, topic: str, centre: str, record: BatchRecord
    ) -> None:
        self._emit(out, reason, detail, topic, _json_or_repr(record.p), centre, record.dev)

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
        self._throttle.warning(
            "quarantined",
            key=reason,
            reason=reason,
            centre=centre,
            device=device,
            topic=topic[:120],
            detail=detail[:160],
        )

    def _internal_error(
        self, out: list[str], exc: Exception, topic: str, where: Topic | None, payload: bytes
    ) -> None:
        """Quarantine a message (or record) whose conversion raised; log it, rate-limited."""
        self.internal_errors += 1
        detail = internal_error_detail(exc)
        if self._throttle.error(
            "internal_error",
            key="internal_error_traceback",
            topic=topic[:120],
            error=detail,
            action="quarantined_acked",
            internal_errors=self.internal_errors,
        ):
            log.error(kv("internal_error_traceback", topic=topic[:120]), exc_info=exc)
        try:
            self._refuse(out, Refusal.INTERNAL_ERROR, detail, topic, payload, where)
        except Exception:  # the quarantine itself fails: nothing left but to say so
            log.exception(kv("internal_error_unquarantined", topic=topic[:120], error=detail))


def _topic_or_none(topic: str) -> Topic | None:
    try:
        return Topic.parse(topic)
    except TopicError:
        return None


def _json_or_repr(value: Any) -> bytes:
    """A reading from an envelope as bytes for a quarantine excerpt (whatever it holds)."""
    try:
        return json.dumps(value, default=str).encode()
    except (TypeError, ValueError, RecursionError):
        return repr(value)[:4096].encode(errors="replace")
