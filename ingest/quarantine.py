"""Quarantine: a refused reading is kept, as a point of its own, with the reason.

Measurement ``contract.storage.QUARANTINE_MEASUREMENT``; tags ``reason`` and,
when known, ``centre`` and ``device``; fields ``detail``, ``topic`` and
``excerpt`` (the payload cut to :data:`EXCERPT_BYTES`, binary shown as
base64, every ``patient_id`` value redacted by the contract's one redaction,
``contract.pseudonym.redacted_excerpt``, which the gateway's quarantine uses
too). Timestamp: when ingest received it.
The quarantine point travels in the same batch as the message's other points,
so the message is acknowledged only once its quarantine point is stored too.
"""

from __future__ import annotations

import base64
import time
from enum import StrEnum
from typing import Final

from contract.pseudonym import redacted_excerpt
from contract.storage import QUARANTINE_MEASUREMENT

EXCERPT_BYTES: Final = 512
DETAIL_CHARS: Final = 300


class Reason(StrEnum):
    """Why a message or reading was quarantined here.

    ``contract.codec.DecodeReason`` and ``contract.admission.Refusal`` values
    (``kind_mismatch``, ``internal_error``) are used as they are.
    """

    BAD_TOPIC = "bad_topic"
    PATIENT_ID = "patient_id_at_central"
    TS_PAST = "ts_implausible_past"
    TS_FUTURE = "ts_implausible_future"
    INFLUX_REJECTED = "influx_rejected"


def excerpt(payload: bytes) -> str:
    """A bounded, printable, patient-safe excerpt of a payload."""
    cut = redacted_excerpt(payload, EXCERPT_BYTES)
    try:
        return cut.decode()
    except UnicodeDecodeError:
        return "base64:" + base64.b64encode(cut[: EXCERPT_BYTES * 3 // 4]).decode()


def _string_field(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def _tag(value: str) -> str:
    return (
        value.replace("\\", "\\\\")
        .replace(",", "\\,")
        .replace("=", "\\=")
        .replace(" ", "\\ ")
        .replace("\n", "\\n")
    )


class QuarantineLines:
    """Builds quarantine points; timestamps are unique per worker (receive time, ns)."""

    def __init__(self) -> None:
        self._last_ns = 0

    def _now_ns(self) -> int:
        now = time.time_ns()
        self._last_ns = now if now > self._last_ns else self._last_ns + 1
        return self._last_ns

    def line(
        self,
        reason: str,
        *,
        detail: str,
        topic: str,
        payload: bytes,
        centre: str | None = None,
        device: str | None = None,
    ) -> str:
        tags = f"{QUARANTINE_MEASUREMENT},reason={_tag(reason)}"
        if centre:
            tags += f",centre={_tag(centre)}"
        if device:
            tags += f",device={_tag(device)}"
        fields = (
            f"detail={_string_field(detail[:DETAIL_CHARS])},"
            f"topic={_string_field(topic[:200])},"
            f"excerpt={_string_field(excerpt(payload))}"
        )
        return f"{tags} {fields} {self._now_ns()}"
