"""Rotating a centre's key: every password of the centre changes at once.

For a stolen or retired gateway: the centre key it holds derives every password
of its centre. A rotation bumps ``key_version`` (a new centre key) and the
credential version of every live device and gateway of the centre, applies the
new logins on the central broker (the old gateway's own login stops working and
its open connection is dropped) and queues the updates to the centre's gateways.
A gateway still holding the old key refuses them (``dynsec_key_outdated``) rather
than set passwords no device has; once the new key is installed and the gateway
restarts, it is sent its centre's devices again and applies them.

The answer carries the new centre key and the new credentials of the centre's
devices and gateways, shown once.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from api.db.models import Device
from api.schemas import KeyRotation
from api.services.audit import record
from api.services.centres import get
from api.services.provisioning import LIVE, Change, Provisioner
from contract.provisioning import DynsecOp, encode_key


def rotate(session: Session, provisioner: Provisioner, actor: str, centre_id: str) -> KeyRotation:
    centre = get(session, centre_id)
    before = {"key_version": centre.key_version}
    centre.key_version += 1
    devices = list(
        session.scalars(
            select(Device)
            .where(Device.centre_id == centre_id, Device.status.in_(LIVE))
            .order_by(Device.id)
        )
    )
    for device in devices:
        device.credential_version += 1
    session.flush()
    changes = [Change(DynsecOp.UPSERT, device) for device in devices]
    try:
        provisioner.apply(session, changes, {centre.id: centre})
    except Exception:
        # The central logins may hold the new passwords already: put back the registry's.
        provisioner.restore_central(session, centre_id)
        raise
    after = {"key_version": centre.key_version, "devices": len(devices)}
    record(session, actor, "centre.rotate_key", "centre", centre_id, before, after)
    credentials = [provisioner.credential_row(centre, device) for device in devices]
    return KeyRotation(
        centre_id=centre_id,
        key_version=centre.key_version,
        centre_key=encode_key(provisioner.centre_key(centre)),
        credentials=credentials,
    )
