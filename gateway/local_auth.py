"""Local enforcement: apply the API's credential changes to the centre's own broker.

The API sends a :class:`contract.provisioning.DynsecUpdate` (no secret inside) on
``gl/v1/{centre}/{gateway}/_gateway/dynsec``. :class:`LocalAuth` derives the device's
password from the centre key (``GRAMLINK_GATEWAY_CENTRE_KEY``) and applies it to
the local broker's dynamic security, so devices authenticate at the centre with
the same credentials and ACLs as centrally, even while the uplink is down.

Applying is idempotent ("already exists" answers count as success), so an
at-least-once redelivery is harmless. ``seq`` is the API's counter per gateway;
an update older than the newest one applied **for the same device** is skipped
(a late redelivery never rolls a device back to an older password or state),
while an older seq of another device is still applied. The newest seq per device
is kept in a :class:`SeqStore` (in memory by default; the gateway passes the
SQLite-backed :class:`gateway.dynsec_seqs.AppliedSeqs` so it survives restarts).
Each applied update also tells an optional :class:`DeviceBook` (the gateway's
:class:`gateway.centre_devices.CentreDevices`) which devices the centre has and
their kinds (and models and provisioning times), so local intake can refuse
readings of unknown devices or kinds and judge device clocks.

Threads: ``apply`` blocks until the local broker answered (or ``timeout``); call
it from a worker, never from the local client's own network thread. Only
``_on_response`` runs on paho's thread. The client should be a connection of its
own (not manual-ack, not shared with relays), so its PUBACKs and the plugin's
responses are nobody else's business; call :meth:`LocalAuth.resubscribe` after
every connect. :meth:`cancel` wakes a waiting ``apply`` at shutdown.

Errors (``LocalAuthError``):
- ``BadUpdate`` (permanent): not a valid DynsecUpdate; quarantine it, never retry;
  ``KeyOutdated`` (a ``BadUpdate``): the update's passwords derive from another
  centre key (the API rotated it and this gateway still holds the old one), so
  applying it would set passwords no device has; the gateway's other work goes on;
- ``LocalBrokerTimeout`` (retryable): the local broker did not answer in time;
- ``LocalBrokerRefused`` (permanent for this message): the plugin refused a command.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from typing import Any, Protocol

import paho.mqtt.client as mqtt
from pydantic import ValidationError

from contract.provisioning import (
    CONTROL_RESPONSE_TOPIC,
    CONTROL_TOPIC,
    TOLERATED_ERRORS,
    DynsecAck,
    DynsecOp,
    DynsecUpdate,
    device_password,
    existed,
    key_id,
    mqtt_username,
    op_commands,
    password_command,
    upsert_commands,
)
from contract.topics import check_id
from gateway.errors import GatewayError

log = logging.getLogger(__name__)
# Repeats of disable/enable/delete for a client the local broker never had.
_ALSO_TOLERATED = frozenset(
    {
        ("disableClient", "Client not found"),
        ("enableClient", "Client not found"),
        ("deleteClient", "Client not found"),
        ("deleteRole", "Role not found"),
    }
)
MAX_UPDATE_BYTES = 4096


class LocalAuthError(GatewayError):
    """A credential update could not be applied to the local broker."""


class BadUpdate(LocalAuthError):
    """Permanent: not a valid DynsecUpdate (quarantine it)."""


class KeyOutdated(BadUpdate):
    """Permanent until the new ``GRAMLINK_GATEWAY_CENTRE_KEY`` is installed."""


class LocalBrokerTimeout(LocalAuthError):
    """Retryable: the local broker did not answer (or is not connected)."""

    retryable = True


class LocalBrokerRefused(LocalAuthError):
    """Permanent for this update: the dynsec plugin refused a command."""


class SeqStore(Protocol):
    """The newest applied ``seq`` per device (-1: none yet), and the credential
    version its password was last set from (-1: unknown)."""

    def get(self, device: str) -> int: ...

    def set(self, device: str, seq: int) -> None: ...

    def version(self, device: str) -> int: ...

    def set_version(self, device: str, credential_version: int) -> None: ...


class DeviceBook(Protocol):
    """The centre's devices, as the applied updates describe them."""

    def learn(
        self, device: str, kind: str, model: str | None = None, provisioned_ms: int | None = None
    ) -> None: ...

    def forget(self, device: str) -> None: ...


class MemorySeqs:
    """A :class:`SeqStore` in memory (forgotten at restart)."""

    def __init__(self) -> None:
        self._seqs: dict[str, int] = {}
        self._versions: dict[str, int] = {}

    def get(self, device: str) -> int:
        return self._seqs.get(device, -1)

    def set(self, device: str, seq: int) -> None:
        self._seqs[device] = seq

    def version(self, device: str) -> int:
        return self._versions.get(device, -1)

    def set_version(self, device: str, credential_version: int) -> None:
        self._versions[device] = credential_version


class LocalAuth:
    """Applies DynsecUpdates of one centre to its local broker."""

    def __init__(
        self,
        local: mqtt.Client,
        centre: str,
        centre_key: bytes,
        *,
        timeout: float = 10.0,
        seqs: SeqStore | None = None,
        devices: DeviceBook | None = None,
    ) -> None:
        self._client = local
        self._centre = check_id(centre, "centre")
        self._key = centre_key
        self._key_id = key_id(centre_key)
        self._timeout = timeout
        self._seqs: SeqStore = seqs if seqs is not None else MemorySeqs()
        self._devices = devices
        self._lock = threading.Lock()
        self._waiting: dict[str, tuple[threading.Event, list[dict[str, Any]]]] = {}
        self._cancelled = False
        self.last_seq = -1  # the newest seq applied for any device (information only)
        self.stale = 0
        self.applied = 0
        self.rejected = 0
        local.message_callback_add(CONTROL_RESPONSE_TOPIC, self._on_response)
        self._subscribe()

    def _subscribe(self) -> None:
        """Subscribe to the plugin's answers (call again after every reconnect)."""
        self._client.subscribe(CONTROL_RESPONSE_TOPIC, qos=1)

    resubscribe = _subscribe

    def cancel(self) -> None:
        """Shutdown: a waiting or later ``apply`` raises LocalBrokerTimeout at once."""
        with self._lock:
            self._cancelled = True
            waiting = list(self._waiting.values())
        for done, _ in waiting:
            done.set()

    def apply(self, payload: bytes) -> DynsecAck:
        """Apply one update; returns the ack to send (optionally) to the API."""
        if len(payload) > MAX_UPDATE_BYTES:
            self.rejected += 1
            raise BadUpdate(f"update of {len(payload)} bytes is too large")
        try:
            update = DynsecUpdate.model_validate_json(payload)
        except ValidationError as exc:
            self.rejected += 1
            raise BadUpdate(f"invalid dynsec update: {exc.error_count()} error(s)") from exc
        if update.key_id is not None and update.key_id != self._key_id:
            self.rejected += 1
            raise KeyOutdated(
                f"centre key {update.key_id} expected, this gateway holds {self._key_id}: "
                "install the new GRAMLINK_GATEWAY_CENTRE_KEY"
            )
        newest = self._seqs.get(update.device_id)
        if update.seq < newest:
            self.stale += 1
            log.info(
                "event=dynsec_update_stale centre=%s device=%s seq=%d last=%d",
                self._centre,
                update.device_id,
                update.seq,
                newest,
            )
            return DynsecAck(
                seq=update.seq, device_id=update.device_id, ok=True, error="stale, skipped"
            )
        if update.op is DynsecOp.UPSERT:
            password = device_password(self._key, update.device_id, update.credential_version)
            commands = upsert_commands(self._centre, update.device_id, update.kind, password)
            answers = self._execute(commands)
            known = self._seqs.version(update.device_id) == update.credential_version
            # Setting a password makes Mosquitto drop the client's connection, so an
            # update re-sent with the version already applied (a gateway coming
            # online again) leaves a connected device alone.
            if not known and any(existed(c, a) for c, a in zip(commands, answers, strict=False)):
                username = mqtt_username(self._centre, update.device_id)
                self._execute([password_command(username, password)])
            self._seqs.set_version(update.device_id, update.credential_version)
        else:
            self._execute(op_commands(update.op, self._centre, update.device_id))
        if self._devices is not None:
            if update.op is DynsecOp.DELETE:
                self._devices.forget(update.device_id)
            else:
                self._devices.learn(
                    update.device_id, update.kind.value, update.model, update.provisioned_ms
                )
        self._seqs.set(update.device_id, update.seq)
        self.last_seq = max(self.last_seq, update.seq)
        self.applied += 1
        log.info(
            "event=dynsec_applied centre=%s device=%s op=%s seq=%d",
            self._centre,
            update.device_id,
            update.op.value,
            update.seq,
        )
        return DynsecAck(seq=update.seq, device_id=update.device_id, ok=True)

    def _execute(self, commands: list[dict[str, Any]]) -> list[dict[str, Any]]:
        key = uuid.uuid4().hex
        tagged = [{**c, "correlationData": f"{key}-{i}"} for i, c in enumerate(commands)]
        done = threading.Event()
        answers: list[dict[str, Any]] = []
        with self._lock:
            if self._cancelled:
                raise LocalBrokerTimeout("stopping")
            self._waiting[key] = (done, answers)
        try:
            info = self._client.publish(CONTROL_TOPIC, json.dumps({"commands": tagged}), qos=1)
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                raise LocalBrokerTimeout(f"local broker not connected ({info.rc})")
            if not done.wait(self._timeout):
                raise LocalBrokerTimeout(f"local broker did not answer in {self._timeout} s")
            if self._cancelled:
                raise LocalBrokerTimeout("stopping")
        finally:
            with self._lock:
                self._waiting.pop(key, None)
        tolerated = TOLERATED_ERRORS | _ALSO_TOLERATED
        ordered = sorted(answers, key=_index)
        for command, answer in zip(tagged, ordered, strict=False):
            error = answer.get("error")
            if error and (command["command"], error) not in tolerated:
                raise LocalBrokerRefused(f"{command['command']}: {error}")
        return ordered

    def _on_response(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            responses = json.loads(msg.payload)["responses"]
        except (ValueError, KeyError, TypeError):
            return
        by_key: dict[str, list[dict[str, Any]]] = {}
        for answer in responses if isinstance(responses, list) else []:
            corr = answer.get("correlationData") if isinstance(answer, dict) else None
            if isinstance(corr, str) and "-" in corr:
                by_key.setdefault(corr.rsplit("-", 1)[0], []).append(answer)
        with self._lock:
            for key, answers in by_key.items():
                waiting = self._waiting.get(key)
                if waiting is not None:
                    waiting[1].extend(answers)
                    waiting[0].set()


def _index(answer: dict[str, Any]) -> int:
    try:
        return int(str(answer.get("correlationData", "")).rsplit("-", 1)[1])
    except (IndexError, ValueError):
        return 0
