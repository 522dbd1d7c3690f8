"""Who may send what: the refusals a valid message can still meet, shared by gateway and ingest.

A message can follow the contract (:mod:`contract.codec` accepts it) and still
not belong where it arrived. Both the gateway and ingest quarantine it then,
with one of these reasons (next to the ``DecodeReason`` values):

- ``unknown_device``: the device is not one of the centre's provisioned devices
  (known to the gateway from the API's credential updates);
- ``kind_mismatch``: a reading or birth names another kind than the one its
  device was registered (gateway) or born (ingest: its retained ``state``) with,
  e.g. a ``router`` reading on a power unit's topic. Stored, it would land in
  the wrong measurement under the wrong device;
- ``internal_error``: handling this one message raised an exception nobody
  expected (a bug): the message is set aside, acknowledged and counted so the
  worker goes on, instead of crashing and being handed the same message again.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final

DETAIL_CHARS: Final = 200


class Refusal(StrEnum):
    UNKNOWN_DEVICE = "unknown_device"
    KIND_MISMATCH = "kind_mismatch"
    INTERNAL_ERROR = "internal_error"


class Refused(ValueError):
    """A valid message refused for where it came from (permanent: retrying cannot help)."""

    def __init__(self, reason: Refusal, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail


def check_kind(device: str, kind: str | None, registered: str | None) -> None:
    """Raise :class:`Refused` (``kind_mismatch``) if ``kind`` is not ``registered``.

    Either side unknown (``None``) is no mismatch.
    """
    if kind is not None and registered is not None and kind != registered:
        raise Refused(Refusal.KIND_MISMATCH, mismatch_detail(device, kind, registered))


def mismatch_detail(device: str, kind: str, registered: str) -> str:
    return f"a {kind} message from {device}, registered as {registered}"


def internal_error_detail(exc: BaseException) -> str:
    """``TypeName: message`` of an unexpected exception, cut short (for a quarantine entry)."""
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= DETAIL_CHARS else text[: DETAIL_CHARS - 3] + "..."
