"""What each gateway holds of its downlink: the edge rule set and the credential updates.

The API numbers both from the gateway's ``Device.dynsec_seq`` and records, per
gateway (table ``gateway_downlink``), the newest update it sent on each channel
(:func:`sent`). The gateway answers every update (``contract.edge.EdgeRulesAck``
on ``.../_gateway/rules/ack``, ``contract.provisioning.DynsecAck`` on
``.../_gateway/dynsec/ack``); :class:`api.device_link.DeviceLink` hands each answer
to :func:`on_rules_ack` / :func:`on_credentials_ack`:

- an answer newer than the newest one recorded moves the gateway on: for rules,
  ``ok`` is the set it now holds (with its number of rules) and clears an earlier
  error, ``ok: false`` records the error (the gateway keeps its older set); for
  credentials, the newest answered seq, and a rejection's error and device
  (cleared when a later update of that device is applied);
- an answer not newer than the newest one recorded (a redelivery), one naming an
  update never sent, or one of a gateway the registry does not have changes
  nothing: the caller counts and logs it (:class:`Outcome`).

:func:`view` says per channel whether the gateway is ``applied`` (holds the newest
update), ``behind`` (an update sent is not answered yet: the gateway is offline,
or its uplink is down), ``rejected`` (it refused the newest one) or ``none`` (nothing
sent yet).
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum

from sqlalchemy.orm import Session

from api.db.models import Device, GatewayDownlink
from api.schemas import DownlinkChannel, DownlinkStatus, GatewayDownlinkPublic
from contract.edge import EdgeRulesAck
from contract.metrics import DeviceKind
from contract.provisioning import DynsecAck


class Downlink(StrEnum):
    RULES = "rules"
    CREDENTIALS = "credentials"


class Outcome(StrEnum):
    RECORDED = "recorded"
    STALE = "stale"  # not newer than the newest answer recorded: changes nothing
    NOT_SENT = "not_sent"  # names an update the API never sent this gateway
    UNKNOWN = "unknown"  # no such gateway of that centre in the registry


def _now() -> datetime:
    return datetime.now(UTC)


def _row(session: Session, gateway: Device) -> GatewayDownlink:
    row = session.get(GatewayDownlink, gateway.id)
    if row is None:
        row = GatewayDownlink(
            gateway_id=gateway.id,
            centre_id=gateway.centre_id,
            rules_sent_seq=0,
            rules_answered_seq=0,
            rules_held_seq=0,
            creds_sent_seq=0,
            creds_answered_seq=0,
            stale_acks=0,
        )
        session.add(row)
    return row


def sent(session: Session, gateway: Device, channel: Downlink) -> None:
    """The gateway was just sent an update numbered ``gateway.dynsec_seq`` on ``channel``."""
    row = _row(session, gateway)
    if channel is Downlink.RULES:
        row.rules_sent_seq, row.rules_sent_at = gateway.dynsec_seq, _now()
    else:
        row.creds_sent_seq, row.creds_sent_at = gateway.dynsec_seq, _now()


def _known(session: Session, centre: str, gateway_id: str) -> GatewayDownlink | Outcome:
    """The gateway's record; an answer creates none (nothing was sent: ``NOT_SENT``)."""
    device = session.get(Device, gateway_id)
    if device is None or device.centre_id != centre or device.kind != DeviceKind.GATEWAY.value:
        return Outcome.UNKNOWN
    return session.get(GatewayDownlink, gateway_id) or Outcome.NOT_SENT


def on_rules_ack(session: Session, centre: str, gateway_id: str, ack: EdgeRulesAck) -> Outcome:
    row = _known(session, centre, gateway_id)
    if isinstance(row, Outcome):
        return row
    if ack.seq > row.rules_sent_seq:
        return Outcome.NOT_SENT
    if ack.seq <= row.rules_answered_seq:
        row.stale_acks += 1
        return Outcome.STALE
    row.rules_answered_seq = ack.seq
    if ack.ok:
        row.rules_held_seq, row.rules_held_count, row.rules_held_at = ack.seq, ack.rules, _now()
        row.rules_error = row.rules_error_seq = row.rules_error_at = None
    else:
        row.rules_error = (ack.error or "rejected")[:256]
        row.rules_error_seq, row.rules_error_at = ack.seq, _now()
    return Outcome.RECORDED


def on_credentials_ack(session: Session, centre: str, gateway_id: str, ack: DynsecAck) -> Outcome:
    row = _known(session, centre, gateway_id)
    if isinstance(row, Outcome):
        return row
    if ack.seq > row.creds_sent_seq:
        return Outcome.NOT_SENT
    if ack.seq <= row.creds_answered_seq:
        row.stale_acks += 1
        return Outcome.STALE
    row.creds_answered_seq, row.creds_answered_at = ack.seq, _now()
    if not ack.ok:
        row.creds_error = (ack.error or "rejected")[:256]
        row.creds_error_seq, row.creds_error_device = ack.seq, ack.device_id
        row.creds_error_at = _now()
    elif row.creds_error_device == ack.device_id:  # that device's newer update went through
        row.creds_error = row.creds_error_seq = row.creds_error_device = None
        row.creds_error_at = None
    return Outcome.RECORDED


def _rules(row: GatewayDownlink) -> DownlinkChannel:
    if row.rules_sent_seq == 0:
        status = DownlinkStatus.NONE
    elif row.rules_held_seq >= row.rules_sent_seq:
        status = DownlinkStatus.APPLIED
    elif row.rules_error_seq is not None and row.rules_error_seq >= row.rules_sent_seq:
        status = DownlinkStatus.REJECTED
    else:
        status = DownlinkStatus.BEHIND
    return DownlinkChannel(
        status=status,
        sent_seq=row.rules_sent_seq or None,
        sent_at=row.rules_sent_at,
        acknowledged_seq=row.rules_held_seq or None,
        acknowledged_at=row.rules_held_at,
        rules=row.rules_held_count,
        error=row.rules_error,
        error_seq=row.rules_error_seq,
        error_at=row.rules_error_at,
    )


def _credentials(row: GatewayDownlink) -> DownlinkChannel:
    if row.creds_sent_seq == 0:
        status = DownlinkStatus.NONE
    elif row.creds_answered_seq < row.creds_sent_seq:
        status = DownlinkStatus.BEHIND
    elif row.creds_error is not None:
        status = DownlinkStatus.REJECTED
    else:
        status = DownlinkStatus.APPLIED
    return DownlinkChannel(
        status=status,
        sent_seq=row.creds_sent_seq or None,
        sent_at=row.creds_sent_at,
        acknowledged_seq=row.creds_answered_seq or None,
        acknowledged_at=row.creds_answered_at,
        error=row.creds_error,
        error_seq=row.creds_error_seq,
        error_at=row.creds_error_at,
        error_device=row.creds_error_device,
    )


def view(session: Session, gateway: Device) -> GatewayDownlinkPublic:
    row = session.get(GatewayDownlink, gateway.id)
    if row is None:
        nothing = DownlinkChannel(status=DownlinkStatus.NONE)
        return GatewayDownlinkPublic(gateway_id=gateway.id, rules=nothing, credentials=nothing)
    return GatewayDownlinkPublic(
        gateway_id=gateway.id,
        rules=_rules(row),
        credentials=_credentials(row),
        stale_acks=row.stale_acks,
    )
