"""Turn an accepted device message into what the outbox stores.

Decodes with the contract (raising ``DecodeError``/``TopicError`` for bad input),
refuses a message of a device the centre does not have or of another kind than
the device's (``contract.admission.Refused``: ``unknown_device``,
``kind_mismatch``; only once the gateway knows the centre's devices, see
:mod:`gateway.centre_devices`), replaces a health reading's ``patient_id`` with
``patient_ref`` (HMAC-SHA256 under the centre key; also a ``patient_id`` key in
an event's ``detail``) and re-encodes with ``contract.codec.encode``. The raw id never reaches disk.
Lanes: a reading of a health kind (telemetry or event) goes in the priority
lane, other events and relayed singles high, other telemetry bulk
(:mod:`gateway.outbox_rows`); a reading whose device time is implausible is
flagged clock-suspect (:mod:`gateway.clock_sanity`).
"""

from __future__ import annotations

from typing import Any, Final, Protocol

from contract.admission import Refusal, Refused, check_kind
from contract.codec import decode, encode
from contract.metrics import HEALTH_KINDS, DeviceKind
from contract.pseudonym import pseudonymize
from contract.topics import Channel, Topic
from gateway.clock_sanity import ClockSanity
from gateway.outbox import BULK, CLOCK_SUSPECT, HIGH, PRIORITY, NewRow

UPSTREAM: Final = (
    Channel.TELEMETRY,
    Channel.EVENT,
    Channel.STATE,
    Channel.CMD_ACK,
    Channel.TWIN_REPORTED,
)
BATCHED: Final = frozenset({Channel.TELEMETRY.value, Channel.EVENT.value})


class DeviceKinds(Protocol):
    """What the gateway knows of the centre's devices (:class:`gateway.centre_devices`)."""

    @property
    def known(self) -> bool: ...

    def kind_of(self, device: str) -> str | None: ...


class Births(Protocol):
    """Where the models of relayed births are kept (:class:`gateway.device_models`)."""

    def born(self, device: str, model: str | None) -> None: ...


class Transformer:
    """Decode, check, pseudonymise, re-encode: one device message to one outbox row."""

    def __init__(
        self,
        centre: str,
        key: bytes,
        devices: DeviceKinds | None = None,
        births: Births | None = None,
        sanity: ClockSanity | None = None,
    ) -> None:
        self.centre = centre
        self._key = key
        self._devices = devices
        self._births = births
        self.sanity = sanity

    def row(self, topic: Topic, payload: bytes, rx_ms: int) -> NewRow:
        registered = self._registered_kind(topic.device)
        message: Any = decode(topic.channel, payload)
        check_kind(topic.device, getattr(message, "kind", None), registered)
        prio, flags = HIGH, 0
        if topic.channel is Channel.STATE and self._births is not None:
            self._births.born(topic.device, message.model)
        if topic.channel in (Channel.TELEMETRY, Channel.EVENT):
            message = self._scrub(message)
            if DeviceKind(message.kind) in HEALTH_KINDS:
                prio = PRIORITY  # clinical: the priority lane
            elif topic.channel is Channel.TELEMETRY:
                prio = BULK
            if self.sanity is not None and self.sanity.suspect(message.ts, rx_ms, topic.device):
                flags = CLOCK_SUSPECT
        return NewRow(prio, topic.device, topic.channel.value, encode(message), rx_ms, flags)

    def _registered_kind(self, device: str) -> str | None:
        """The device's kind (None: not checked); raises ``unknown_device``."""
        devices = self._devices
        if devices is None or not devices.known:
            return None
        kind = devices.kind_of(device)
        if kind is None:
            raise Refused(Refusal.UNKNOWN_DEVICE, f"{device} is not a device of {self.centre}")
        return kind

    def _scrub(self, message: Any) -> Any:
        metrics = message.metrics
        update: dict[str, Any] = {}
        if metrics is not None and getattr(metrics, "patient_id", None) is not None:
            ref = pseudonymize(self._key, metrics.patient_id)
            update["metrics"] = metrics.model_copy(update={"patient_id": None, "patient_ref": ref})
        detail = getattr(message, "detail", None)
        if detail and "patient_id" in detail:
            scrubbed = {k: v for k, v in detail.items() if k != "patient_id"}
            scrubbed["patient_ref"] = pseudonymize(self._key, str(detail["patient_id"]))
            update["detail"] = scrubbed
        return message.model_copy(update=update) if update else message
