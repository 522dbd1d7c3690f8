"""``/v1/alert-rules``: what raises alerts (admins manage, everyone reads)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response

from alerting.rules import RuleSpec, Severity
from api.alert_schemas import ConditionType, RuleCreate, RulePatch, RulePublic
from api.deps import DB, Admin, PageArgs, Parts, Reader
from api.schemas import Page
from api.services import alert_rules, edge_rules

router = APIRouter(prefix="/v1/alert-rules", tags=["alert rules"])
RuleIdPath = Annotated[str, Path(pattern=r"^[a-z0-9][a-z0-9-]{0,63}$")]


def _before(session: DB, rule_id: str) -> RuleSpec:
    return alert_rules.spec_of(alert_rules.get(session, rule_id))


def _tell_gateways(
    session: DB, parts: Parts, before: RuleSpec | None, after: RuleSpec | None
) -> None:
    """The centres' gateways evaluate edge rules themselves: send them the new set."""
    edge_rules.push_rule_change(session, parts.provisioner.dynsec, before, after)


@router.get("", summary="List rules (filter by enabled, severity, condition type, clinical)")
def list_rules(
    session: DB,
    _who: Reader,
    page: PageArgs,
    enabled: bool | None = None,
    severity: Severity | None = None,
    condition_type: ConditionType | None = None,
    clinical: bool | None = None,
) -> Page[RulePublic]:
    rows, total = alert_rules.listing(
        session,
        enabled=enabled,
        severity=severity.value if severity else None,
        condition_type=condition_type,
        clinical=clinical,
        limit=page.limit,
        offset=page.offset,
    )
    items = [alert_rules.public(r) for r in rows]
    return Page(items=items, total=total, limit=page.limit, offset=page.offset)


@router.post(
    "",
    status_code=201,
    summary="Create a rule (checked against the contract: a bad metric, unit, "
    "threshold or duration is a 422 naming the field)",
)
def create_rule(session: DB, who: Admin, parts: Parts, body: RuleCreate) -> RulePublic:
    row = alert_rules.create(session, who.label, body, body.id)
    session.commit()
    _tell_gateways(session, parts, None, alert_rules.spec_of(row))
    session.commit()
    return alert_rules.public(row)


@router.get("/{rule_id}", summary="One rule")
def get_rule(session: DB, _who: Reader, rule_id: RuleIdPath) -> RulePublic:
    return alert_rules.public(alert_rules.get(session, rule_id))


@router.put("/{rule_id}", summary="Replace a rule's spec (its id stays; version + 1)")
def replace_rule(
    session: DB, who: Admin, parts: Parts, rule_id: RuleIdPath, body: RuleSpec
) -> RulePublic:
    before = _before(session, rule_id)
    row = alert_rules.replace(session, who.label, rule_id, body)
    session.commit()
    _tell_gateways(session, parts, before, alert_rules.spec_of(row))
    session.commit()
    return alert_rules.public(row)


@router.patch("/{rule_id}", summary="Change parts of a rule (version + 1)")
def patch_rule(
    session: DB, who: Admin, parts: Parts, rule_id: RuleIdPath, body: RulePatch
) -> RulePublic:
    before = _before(session, rule_id)
    row = alert_rules.patch(session, who.label, rule_id, body)
    session.commit()
    _tell_gateways(session, parts, before, alert_rules.spec_of(row))
    session.commit()
    return alert_rules.public(row)


@router.post("/{rule_id}/enable", summary="Enable a rule")
def enable_rule(session: DB, who: Admin, parts: Parts, rule_id: RuleIdPath) -> RulePublic:
    before = _before(session, rule_id)
    row = alert_rules.set_enabled(session, who.label, rule_id, True)
    session.commit()
    _tell_gateways(session, parts, before, alert_rules.spec_of(row))
    session.commit()
    return alert_rules.public(row)


@router.post("/{rule_id}/disable", summary="Disable a rule (its open alerts are resolved)")
def disable_rule(session: DB, who: Admin, parts: Parts, rule_id: RuleIdPath) -> RulePublic:
    before = _before(session, rule_id)
    row = alert_rules.set_enabled(session, who.label, rule_id, False)
    session.commit()
    _tell_gateways(session, parts, before, alert_rules.spec_of(row))
    session.commit()
    return alert_rules.public(row)


@router.delete(
    "/{rule_id}", status_code=204, summary="Delete a rule (its open alerts are resolved)"
)
def delete_rule(session: DB, who: Admin, parts: Parts, rule_id: RuleIdPath) -> Response:
    before = _before(session, rule_id)
    alert_rules.delete(session, who.label, rule_id)
    session.commit()
    _tell_gateways(session, parts, before, None)
    session.commit()
    return Response(status_code=204)
