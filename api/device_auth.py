"""HTTP Basic with a device's (or gateway's) own MQTT login: ``{centre}/{device}`` and
its derived password (``contract.provisioning``). Used by firmware downloads."""

from __future__ import annotations

import base64
import binascii
import hmac

from sqlalchemy.orm import Session

from api.db.models import Centre, Device
from api.errors import Unauthorized
from api.services.provisioning import Provisioner
from contract.topics import ID_RE

LIVE = ("provisioned", "active")


def basic_login(header: str | None) -> tuple[str, str]:
    if not header or not header.lower().startswith("basic "):
        raise Unauthorized("a device login (HTTP Basic) is required")
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise Unauthorized("unreadable HTTP Basic credentials") from exc
    username, sep, password = decoded.partition(":")
    if not sep:
        raise Unauthorized("unreadable HTTP Basic credentials")
    return username, password


def authenticate(session: Session, provisioner: Provisioner, header: str | None) -> Device:
    """The live device whose own login this is; Unauthorized otherwise (same answer
    for an unknown device and a wrong password)."""
    username, password = basic_login(header)
    centre_id, _, device_id = username.partition("/")
    if not (ID_RE.fullmatch(centre_id) and ID_RE.fullmatch(device_id)):
        raise Unauthorized("unknown device or wrong password")
    device = session.get(Device, device_id)
    centre = session.get(Centre, centre_id)
    if device is None or centre is None or device.centre_id != centre_id:
        raise Unauthorized("unknown device or wrong password")
    expected = provisioner.credentials(centre, device).password
    if not hmac.compare_digest(expected.encode(), password.encode()):
        raise Unauthorized("unknown device or wrong password")
    if device.status not in LIVE:
        raise Unauthorized(f"device is {device.status}")
    return device
