"""Device credentials and their enforcement on both brokers (central and a centre's local one).

No clear-text device password is stored anywhere. Passwords are derived:

- ``centre_key = HMAC-SHA256(master, "centre:{centre}:{key_version}")`` (the API holds
  the master secret in its environment only; a gateway holds its own centre's key);
- ``password = base64url(HMAC-SHA256(centre_key, "device:{device}:{credential_version}"))``.

The API tells a centre's gateway about a change with a :class:`DynsecUpdate` on
``gl/v1/{centre}/{gateway}/_gateway/dynsec`` (QoS 1, never retained). The message
carries versions only, never a secret (and the device's model and provisioning
time, which the gateway stamps and judges readings by): the gateway derives the same password from
its centre key and applies it to its local broker's dynamic security. The ACL of a
client is defined here once (:func:`client_acls`) so both brokers enforce the same.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from enum import StrEnum
from typing import Annotated, Any, Final

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from contract.codec import DecodeError, DecodeReason
from contract.messages import SchemaVersion, TimestampMs
from contract.metrics import DeviceKind
from contract.receipts import RECEIPT_CHANNEL
from contract.topics import ID_RE, PREFIX, Channel, check_id, topic

DYNSEC_CHANNEL: Final = "_gateway/dynsec"
DYNSEC_ACK_CHANNEL: Final = "_gateway/dynsec/ack"
CONTROL_TOPIC: Final = "$CONTROL/dynamic-security/v1"
CONTROL_RESPONSE_TOPIC: Final = "$CONTROL/dynamic-security/v1/response"
MIN_KEY_BYTES: Final = 32
MAX_ACK_BYTES: Final = 4 * 1024
ROLE_PREFIX: Final = "gl-"

Id = Annotated[str, StringConstraints(pattern=f"^{ID_RE.pattern}$")]


class DynsecOp(StrEnum):
    UPSERT = "upsert"  # create the client (and its role) or set its password
    DISABLE = "disable"  # suspend, decommission: the broker drops an open connection
    ENABLE = "enable"  # resume
    DELETE = "delete"


class DynsecUpdate(BaseModel):
    """API -> gateway: apply one credential change to the centre's local broker."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    v: SchemaVersion = 1
    op: DynsecOp
    device_id: Id
    kind: DeviceKind
    credential_version: Annotated[int, Field(ge=1, le=2**31)]
    seq: Annotated[int, Field(ge=0, le=2**53)]
    # Which centre key the passwords derive from (``key_id``); a gateway holding
    # another key refuses the update instead of setting passwords nobody has.
    key_id: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{16}$")] | None = None
    # The device's model in the API's registry: the gateway stamps it into each of the
    # device's envelope records (``BatchRecord.m``), so its stored series is fixed.
    model: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None
    # When the API provisioned the device (epoch ms, the registry's ``created_at``):
    # the gateway flags a reading whose device time is well before it
    # (``gateway.clock_sanity``). Absent in updates of an older API: not judged.
    provisioned_ms: TimestampMs | None = None


class DynsecAck(BaseModel):
    """Gateway -> API (optional): the outcome of one update."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    v: SchemaVersion = 1
    seq: Annotated[int, Field(ge=0, le=2**53)]
    device_id: Id
    ok: bool
    error: Annotated[str, StringConstraints(max_length=256)] | None = None


def dynsec_topic(centre: str, gateway: str) -> str:
    return f"{PREFIX}/{check_id(centre, 'centre')}/{check_id(gateway, 'gateway')}/{DYNSEC_CHANNEL}"


def dynsec_ack_topic(centre: str, gateway: str) -> str:
    return f"{dynsec_topic(centre, gateway)}/ack"


def decode_dynsec_ack(payload: bytes) -> DynsecAck:
    """A gateway's :class:`DynsecAck`; raises :class:`contract.codec.DecodeError`."""
    if len(payload) > MAX_ACK_BYTES:
        raise DecodeError(DecodeReason.TOO_LARGE, f"{len(payload)} bytes > {MAX_ACK_BYTES}")
    try:
        return DynsecAck.model_validate_json(payload)
    except ValueError as exc:
        raise DecodeError(DecodeReason.INVALID, str(exc)[:200]) from None


def dynsec_ack_filter() -> str:
    """Every gateway's :class:`DynsecAck` (what the API follows)."""
    return f"{PREFIX}/+/+/{DYNSEC_ACK_CHANNEL}"


def centre_key(master: bytes, centre: str, key_version: int) -> bytes:
    """The 32-byte key of one centre, derived from the master secret."""
    if len(master) < MIN_KEY_BYTES:
        raise ValueError(f"the master secret needs at least {MIN_KEY_BYTES} bytes")
    message = f"centre:{check_id(centre, 'centre')}:{int(key_version)}".encode()
    return hmac.new(master, message, hashlib.sha256).digest()


def device_password(key: bytes, device: str, credential_version: int) -> str:
    """The MQTT password of a device (or gateway): 43 url-safe characters."""
    if len(key) < MIN_KEY_BYTES:
        raise ValueError(f"a centre key needs at least {MIN_KEY_BYTES} bytes")
    message = f"device:{check_id(device, 'device')}:{int(credential_version)}".encode()
    digest = hmac.new(key, message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def key_id(key: bytes) -> str:
    """A public fingerprint of a centre key (reveals nothing that derives a password)."""
    return hmac.new(key, b"gramlink key id", hashlib.sha256).hexdigest()[:16]


def encode_key(key: bytes) -> str:
    return base64.urlsafe_b64encode(key).decode()


def decode_key(text: str) -> bytes:
    key = base64.urlsafe_b64decode(text.encode())
    if len(key) < MIN_KEY_BYTES:
        raise ValueError(f"a centre key needs at least {MIN_KEY_BYTES} bytes")
    return key


def mqtt_username(centre: str, device: str) -> str:
    """The MQTT username of a device or gateway on both brokers: ``{centre}/{device}``.

    The username spans the two topic levels before the channel, so a broker ACL
    pattern ``gl/v1/%u/telemetry`` names exactly one device of one centre
    (Mosquitto 2.0 substitutes ``%u`` across levels; see docs/architecture.md).
    """
    return f"{check_id(centre, 'centre')}/{check_id(device, 'device')}"


def role_name(device: str) -> str:
    return ROLE_PREFIX + check_id(device, "device")


DEVICE_SENDS: Final = (
    Channel.TELEMETRY,
    Channel.EVENT,
    Channel.STATE,
    Channel.CMD_ACK,
    Channel.TWIN_REPORTED,
)
DEVICE_RECEIVES: Final = (Channel.CMD, Channel.TWIN_DESIRED)


def client_acls(centre: str, device: str, kind: DeviceKind | str) -> list[dict[str, Any]]:
    """The dynamic-security ACL of one client: exactly its own topics.

    A device publishes its telemetry, event, state, cmd/ack and twin/reported and
    subscribes to its cmd and twin/desired; a gateway has its centre's subtree
    both ways, except storage receipts (``_gateway/receipt``): it may not publish
    any and reads only its own (denials and its own receipt at higher priorities:
    dynsec checks a role's ACLs from the highest priority down). Everything else
    falls to the default ACL access (publish denied).
    """
    acls: list[dict[str, Any]] = []
    if DeviceKind(kind) is DeviceKind.GATEWAY:
        subtree = f"{PREFIX}/{check_id(centre, 'centre')}/#"
        receipts = f"{PREFIX}/{centre}/+/{RECEIPT_CHANNEL}"
        own = f"{PREFIX}/{centre}/{check_id(device, 'device')}/{RECEIPT_CHANNEL}"
        for acltype in ("publishClientReceive", "subscribePattern"):
            acls.append({"acltype": acltype, "topic": own, "priority": 2, "allow": True})
        for acltype in ("publishClientSend", "publishClientReceive", "subscribePattern"):
            acls.append({"acltype": acltype, "topic": receipts, "priority": 1, "allow": False})
        for acltype in ("publishClientSend", "publishClientReceive", "subscribePattern"):
            acls.append({"acltype": acltype, "topic": subtree, "allow": True})
        return acls
    for channel in DEVICE_SENDS:
        acls.append(
            {"acltype": "publishClientSend", "topic": topic(centre, device, channel), "allow": True}
        )
    for channel in DEVICE_RECEIVES:
        name = topic(centre, device, channel)
        acls.append({"acltype": "subscribePattern", "topic": name, "allow": True})
        acls.append({"acltype": "publishClientReceive", "topic": name, "allow": True})
    return acls


def upsert_commands(
    centre: str, device: str, kind: DeviceKind | str, password: str
) -> list[dict[str, Any]]:
    """Dynsec commands that create a client with its role.

    ``createRole``/``createClient`` answer "already exists" when they ran before;
    callers treat that as success and then send :func:`password_command` for the
    clients that existed (a rotation), which keeps the whole sequence idempotent.
    Each dynsec command makes Mosquitto 2.0 rewrite its whole config file, so a
    new client costs two commands, not three.
    """
    role = role_name(device)
    return [
        {"command": "createRole", "rolename": role, "acls": client_acls(centre, device, kind)},
        {
            "command": "createClient",
            "username": mqtt_username(centre, device),
            "password": password,
            "roles": [{"rolename": role, "priority": 1}],
        },
    ]


def password_command(username: str, password: str) -> dict[str, Any]:
    return {"command": "setClientPassword", "username": username, "password": password}


def existed(command: dict[str, Any], answer: dict[str, Any]) -> bool:
    """True if a createClient was answered "already exists" (the password must be set)."""
    return command.get("command") == "createClient" and answer.get("error") == (
        "Client already exists"
    )


def op_commands(op: DynsecOp, centre: str, device: str) -> list[dict[str, Any]]:
    """Dynsec commands for disable, enable and delete."""
    username = mqtt_username(centre, device)
    if op is DynsecOp.DISABLE:
        return [{"command": "disableClient", "username": username}]
    if op is DynsecOp.ENABLE:
        return [{"command": "enableClient", "username": username}]
    if op is DynsecOp.DELETE:
        return [
            {"command": "deleteClient", "username": username},
            {"command": "deleteRole", "rolename": role_name(device)},
        ]
    raise ValueError(f"{op} needs a password: use upsert_commands")


# Errors a repeated (idempotent) command answers; they mean "already in that state".
TOLERATED_ERRORS: Final = frozenset(
    {
        ("createRole", "Role already exists"),
        ("createClient", "Client already exists"),
    }
)
