"""The rules each centre's gateway evaluates itself, sent down like credential updates.

A rule runs at the edge when it is clinical or marked ``edge: true``
(``RuleSpec.runs_at_edge``) and a reading decides it (not a timer: absence and
offline need the central clocks). A centre's set is the enabled edge rules whose
scope includes the centre (all, its id, its hub, district or state; a device or
device-kind scope when the centre could have it: the gateway matches those per
reading). The API publishes the whole set as a :class:`contract.edge.EdgeRules`
on ``gl/v1/{centre}/{gateway}/_gateway/rules`` (QoS 1, to the gateway's
persistent session), numbered from the gateway's downlink counter
(``Device.dynsec_seq``, the one credential updates use):

- after every rule change, to the gateways of the centres the rule's old or new
  version applies to (:func:`push_rule_change`);
- when a gateway comes online (:func:`seed_gateway`, with the credentials), so a
  gateway that missed updates (a new one, or one whose session expired) catches up.

Each send is recorded (:mod:`api.services.gateway_downlink`) and the gateway's
``EdgeRulesAck`` moves it to ``applied`` or ``rejected``; :func:`centre_view`
(``GET /v1/centres/{id}/edge-rules``) shows which set each gateway holds.

A publish that fails (the central broker down) is logged, not raised: the rule
change stands, and the gateway gets the set when it next comes online.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from alerting.rules import READING_CONDITIONS, Place, Rule, RuleSpec, ScopeKind
from api.db.models import AlertRule, Centre, Device
from api.dynsec import DynsecClient, DynsecError
from api.schemas import CentreEdgeRules, EdgeRuleRef
from api.services import gateway_downlink
from api.services.gateway_downlink import Downlink
from api.services.provisioning import LIVE, Provisioner, gateways_of
from contract.edge import EdgeRules, rules_topic
from contract.metrics import DeviceKind

log = logging.getLogger(__name__)


def at_edge(spec: RuleSpec) -> bool:
    return spec.enabled and spec.runs_at_edge and spec.condition.type in READING_CONDITIONS


def applies(session: Session, spec: RuleSpec, centre: Centre) -> bool:
    """Whether ``spec``'s scope can include readings of ``centre``."""
    scope = spec.scope
    if scope.kind in (ScopeKind.ALL, ScopeKind.DEVICE_KIND):
        return True
    if scope.kind is ScopeKind.DEVICE:
        device = session.get(Device, scope.value)
        return device is not None and device.centre_id == centre.id
    return scope.matches(Place(centre.id, None, None, centre.hub_id, centre.district, centre.state))


def rules_for(session: Session, centre: Centre) -> list[Rule]:
    """The enabled edge rules of ``centre``, by id."""
    rules = []
    for row in session.scalars(
        select(AlertRule).where(AlertRule.enabled.is_(True)).order_by(AlertRule.id)
    ):
        try:
            rule = Rule.model_validate(
                {**row.spec, "id": row.id, "version": row.version, "enabled": True}
            )
        except ValidationError:
            continue  # the engine logs it
        if at_edge(rule) and applies(session, rule, centre):
            rules.append(rule)
    return rules


def message_for(session: Session, gateway: Device, centre: Centre) -> tuple[str, bytes]:
    gateway.dynsec_seq += 1
    rules = [r.model_dump(mode="json", by_alias=True) for r in rules_for(session, centre)]
    update = EdgeRules(seq=gateway.dynsec_seq, rules=rules)
    gateway_downlink.sent(session, gateway, Downlink.RULES)
    return rules_topic(gateway.centre_id, gateway.id), update.model_dump_json().encode()


def centre_view(session: Session, centre: Centre) -> CentreEdgeRules:
    """The set the centre's gateways should hold, and what each acknowledged."""
    return CentreEdgeRules(
        centre_id=centre.id,
        rules=[EdgeRuleRef(id=r.id, version=r.version) for r in rules_for(session, centre)],
        gateways=[gateway_downlink.view(session, g) for g in gateways_of(session, centre.id)],
    )


def _publish(dynsec: DynsecClient, messages: list[tuple[str, bytes]]) -> bool:
    if not messages:
        return True
    try:
        dynsec.publish_many(messages)
    except DynsecError as exc:
        log.error("event=edge_rules_not_sent gateways=%d error=%s", len(messages), exc)
        return False
    log.info("event=edge_rules_sent gateways=%d", len(messages))
    return True


def push(session: Session, dynsec: DynsecClient, centres: Iterable[Centre]) -> bool:
    """Send each of ``centres``' gateways its set (flushes the counters it uses)."""
    messages = []
    for centre in centres:
        for gateway in gateways_of(session, centre.id):
            messages.append(message_for(session, gateway, centre))
    session.flush()
    return _publish(dynsec, messages)


def push_rule_change(
    session: Session, dynsec: DynsecClient, before: RuleSpec | None, after: RuleSpec | None
) -> bool:
    """A rule changed from ``before`` to ``after`` (None: created / deleted)."""
    specs = [s for s in (before, after) if s is not None and at_edge(s)]
    if not specs:
        return True
    with_gateways = select(Device.centre_id).where(
        Device.kind == DeviceKind.GATEWAY.value, Device.status.in_(LIVE)
    )
    centres = session.scalars(select(Centre).where(Centre.id.in_(with_gateways)))
    affected = [c for c in centres if any(applies(session, s, c) for s in specs)]
    return push(session, dynsec, affected)


def seed_gateway(session: Session, dynsec: DynsecClient, gateway: Device) -> None:
    """A gateway came online: its centre's set (after its credentials)."""
    centre = session.get(Centre, gateway.centre_id)
    if centre is not None:
        message = message_for(session, gateway, centre)
        session.flush()
        _publish(dynsec, [message])


def gateway_resync(provisioner: Provisioner) -> Callable[[Session, Device], None]:
    """What the API does when a gateway comes online: credentials, then edge rules."""

    def resync(session: Session, gateway: Device) -> None:
        provisioner.seed_gateway(session, gateway)
        seed_gateway(session, provisioner.dynsec, gateway)

    return resync
