"""Credentials of devices and gateways, enforced on the central broker and, through the
downlink to each centre's gateway, on the centre's local broker.

Passwords are derived (``contract.provisioning``) from a master secret that lives in
the API's environment only; the registry stores credential versions, never a
password. The central broker's logins live in one of the stores of :mod:`api.logins`.
Errors of the broker (``DynsecError``, ``BrokerFilesError``) become
:class:`api.errors.BrokerUnavailable` (503).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from api.broker_files import BrokerFilesError, FileLogins
from api.db.models import Centre, Device
from api.dynsec import DynsecClient, DynsecError, DynsecRefused
from api.errors import BrokerUnavailable
from api.logins import CentralLogins, LoginChange
from api.schemas import CredentialRow, Credentials, Status
from api.services import gateway_downlink
from api.services.gateway_downlink import Downlink
from contract.metrics import DeviceKind
from contract.provisioning import (
    DynsecOp,
    DynsecUpdate,
    centre_key,
    device_password,
    dynsec_topic,
    encode_key,
    key_id,
    mqtt_username,
)

log = logging.getLogger(__name__)
LIVE = (Status.PROVISIONED.value, Status.ACTIVE.value, Status.SUSPENDED.value)


@dataclass(frozen=True)
class Change:
    op: DynsecOp
    device: Device


@contextmanager
def broker_errors() -> Iterator[None]:
    try:
        yield
    except DynsecRefused as exc:
        log.error("event=dynsec_refused command=%s subject=%s", exc.command, exc.subject)
        raise BrokerUnavailable(f"the broker refused {exc.command}: {exc.error}") from exc
    except (DynsecError, BrokerFilesError) as exc:
        raise BrokerUnavailable(f"broker did not answer: {exc}") from exc


class Provisioner:
    def __init__(self, master: bytes, dynsec: DynsecClient, logins: CentralLogins) -> None:
        self._master = master
        self.dynsec = dynsec
        self.logins = logins

    def centre_key(self, centre: Centre) -> bytes:
        return centre_key(self._master, centre.id, centre.key_version)

    def credentials(self, centre: Centre, device: Device) -> Credentials:
        key = self.centre_key(centre)
        return Credentials(
            username=mqtt_username(centre.id, device.id),
            password=device_password(key, device.id, device.credential_version),
            credential_version=device.credential_version,
            centre_key=encode_key(key) if device.kind == DeviceKind.GATEWAY else None,
        )

    def credential_row(self, centre: Centre, device: Device) -> CredentialRow:
        """One line of a credentials sheet (bulk provisioning, key rotation)."""
        creds = self.credentials(centre, device)
        return CredentialRow(
            centre_id=device.centre_id,
            device_id=device.id,
            kind=device.kind,
            model=device.model,
            username=creds.username,
            password=creds.password,
        )

    def login_change(self, op: DynsecOp, device: Device, centre: Centre) -> LoginChange:
        password = None
        if op in (DynsecOp.UPSERT, DynsecOp.ENABLE):
            password = self.credentials(centre, device).password
        return LoginChange(
            op,
            device.centre_id,
            device.id,
            DeviceKind(device.kind),
            password,
            enabled=device.status in (Status.PROVISIONED.value, Status.ACTIVE.value),
        )

    def apply(self, session: Session, changes: list[Change], centres: dict[str, Centre]) -> None:
        """Apply changes on the central broker, then queue them to the centres' gateways."""
        logins = [
            self.login_change(c.op, c.device, _centre(session, centres, c.device.centre_id))
            for c in changes
        ]
        with broker_errors():
            self.logins.apply(logins)
            self.dynsec.publish_many(self._downlink(session, changes, centres))

    def _downlink(
        self, session: Session, changes: list[Change], centres: dict[str, Centre]
    ) -> list[tuple[str, bytes]]:
        by_centre: dict[str, list[Change]] = {}
        for change in changes:
            if change.device.kind != DeviceKind.GATEWAY:
                by_centre.setdefault(change.device.centre_id, []).append(change)
        messages: list[tuple[str, bytes]] = []
        for centre_id, centre_changes in by_centre.items():
            centre = _centre(session, centres, centre_id)
            for gateway in gateways_of(session, centre_id):
                messages += self.updates_for(gateway, centre, centre_changes)
                gateway_downlink.sent(session, gateway, Downlink.CREDENTIALS)
        return messages

    def updates_for(
        self, gateway: Device, centre: Centre, changes: Iterable[Change]
    ) -> list[tuple[str, bytes]]:
        topic = dynsec_topic(gateway.centre_id, gateway.id)
        current_key = key_id(self.centre_key(centre))
        out = []
        for change in changes:
            gateway.dynsec_seq += 1
            update = DynsecUpdate(
                op=change.op,
                device_id=change.device.id,
                kind=DeviceKind(change.device.kind),
                credential_version=change.device.credential_version,
                seq=gateway.dynsec_seq,
                key_id=current_key,
                model=change.device.model or None,
                provisioned_ms=provisioned_ms(change.device),
            )
            out.append((topic, update.model_dump_json().encode()))
        return out

    def seed_gateway(self, session: Session, gateway: Device) -> None:
        """Queue every live device of the centre to a new gateway, so its broker knows them."""
        changes: list[Change] = []
        for device in session.scalars(
            select(Device).where(
                Device.centre_id == gateway.centre_id,
                Device.kind != DeviceKind.GATEWAY.value,
                Device.status.in_(LIVE),
            )
        ):
            changes.append(Change(DynsecOp.UPSERT, device))
            if device.status == Status.SUSPENDED:
                changes.append(Change(DynsecOp.DISABLE, device))
        if changes:
            with broker_errors():
                centre = _centre(session, {}, gateway.centre_id)
                messages = self.updates_for(gateway, centre, changes)
                gateway_downlink.sent(session, gateway, Downlink.CREDENTIALS)
                self.dynsec.publish_many(messages)

    def rewrite_central(self, session: Session, files: FileLogins) -> None:
        """Write the broker's login files afresh from the registry (at start)."""
        centres = {c.id: c for c in session.scalars(select(Centre))}
        devices = session.scalars(select(Device).where(Device.status.in_(LIVE)))
        with broker_errors():
            files.replace_all(
                self.login_change(DynsecOp.UPSERT, d, centres[d.centre_id]) for d in devices
            )

    def restore_central(
        self, session: Session, centre_id: str, device_ids: list[str] | None = None
    ) -> None:
        """Best effort after a failed change of existing logins: roll the session back
        and put the registry's logins back on the central broker."""
        session.rollback()
        centre = session.get(Centre, centre_id)
        if centre is None:
            return
        query = select(Device).where(Device.centre_id == centre_id, Device.status.in_(LIVE))
        if device_ids is not None:
            query = query.where(Device.id.in_(device_ids))
        changes = [self.login_change(DynsecOp.UPSERT, d, centre) for d in session.scalars(query)]
        try:
            self.logins.apply(changes)
        except (DynsecError, BrokerFilesError) as exc:
            log.error("event=login_restore_failed centre=%s error=%s", centre_id, exc)

    def undo(self, devices: list[Device]) -> None:
        """Best effort after a failed transaction: remove logins created on the central broker."""
        changes = [
            LoginChange(DynsecOp.DELETE, d.centre_id, d.id, DeviceKind(d.kind)) for d in devices
        ]
        try:
            self.logins.undo(changes)
        except (DynsecError, BrokerFilesError) as exc:
            log.error("event=login_undo_failed devices=%d error=%s", len(devices), exc)


def _centre(session: Session, centres: dict[str, Centre], centre_id: str) -> Centre:
    centre = centres.get(centre_id) or session.get(Centre, centre_id)
    if centre is None:
        raise LookupError(f"centre {centre_id} of a device is missing")
    centres[centre_id] = centre
    return centre


def provisioned_ms(device: Device) -> int:
    """When the device was provisioned (its registry record's creation), epoch ms."""
    created = device.created_at or datetime.now(UTC)
    if created.tzinfo is None:  # SQLite gives back naive datetimes: they are UTC
        created = created.replace(tzinfo=UTC)
    return int(created.timestamp() * 1000)


def gateways_of(session: Session, centre_id: str) -> list[Device]:
    return list(
        session.scalars(
            select(Device).where(
                Device.centre_id == centre_id,
                Device.kind == DeviceKind.GATEWAY.value,
                Device.status.in_(LIVE),
            )
        )
    )
