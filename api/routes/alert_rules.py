"""``/v1/alert-rules``: what raises alerts (admins manage, everyone reads)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Path, Response

from alerting.rules import RuleSpec, Severity
from api.alert_schemas import ConditionType, RuleCreate, RulePatch, RulePublic
from api.db.models import AlertRule
from api.deps import DB, Admin, PageArgs, Parts, Reader
from api.schemas import Page
from api.services import alert_rules, edge_rules

router = APIRouter(prefix="/v1/alert-rules", tags=["alert rules"])
RuleIdPath = Annotated[str, Path(pattern=r"^[a-z0-9][a-z0-9-]{0,63}$")]


def _changed(
    session: DB,
    parts: Parts,
    before: RuleSpec | None,
    change: Callable[[], AlertRule | None],
) -> AlertRule | None:
    """Make ``change`` to the rules and commit it, then send the centres' gateways
    (which evaluate edge rules themselves) the sets it touched."""
    row = change()
    session.commit()
    after = None if row is None else alert_rules.spec_of(row)
    edge_rules.push_rule_change(session, parts.provisioner.dynsec, before, after)
    session.commit()
    return row


def _changed_rule(
    session: DB, parts: Parts, rule_id: str, change: Callable[[], AlertRule]
) -> RulePublic:
    """:func:`_changed` for a rule that exists before and after."""
    before = alert_rules.spec_of(alert_rules.get(session, rule_id))
    row = _changed(session, parts, before, change)
    assert row is not None
    return alert_rules.public(row)


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
    row = _changed(
        session, parts, None, lambda: alert_rules.create(session, who.label, body, body.id)
    )
    assert row is not None
    return alert_rules.public(row)


@router.get("/{rule_id}", summary="One rule")
def get_rule(session: DB, _who: Reader, rule_id: RuleIdPath) -> RulePublic:
    return alert_rules.public(alert_rules.get(session, rule_id))


@router.put("/{rule_id}", summary="Replace a rule's spec (its id stays; version + 1)")
def replace_rule(
    session: DB, who: Admin, parts: Parts, rule_id: RuleIdPath, body: RuleSpec
) -> RulePublic:
    return _changed_rule(
        session, parts, rule_id, lambda: alert_rules.replace(session, who.label, rule_id, body)
    )


@router.patch("/{rule_id}", summary="Change parts of a rule (version + 1)")
def patch_rule(
    session: DB, who: Admin, parts: Parts, rule_id: RuleIdPath, body: RulePatch
) -> RulePublic:
    return _changed_rule(
        session, parts, rule_id, lambda: alert_rules.patch(session, who.label, rule_id, body)
    )


@router.post("/{rule_id}/enable", summary="Enable a rule")
def enable_rule(session: DB, who: Admin, parts: Parts, rule_id: RuleIdPath) -> RulePublic:
    return _changed_rule(
        session, parts, rule_id, lambda: alert_rules.set_enabled(session, who.label, rule_id, True)
    )


@router.post("/{rule_id}/disable", summary="Disable a rule (its open alerts are resolved)")
def disable_rule(session: DB, who: Admin, parts: Parts, rule_id: RuleIdPath) -> RulePublic:
    return _changed_rule(
        session, parts, rule_id, lambda: alert_rules.set_enabled(session, who.label, rule_id, False)
    )


@router.delete(
    "/{rule_id}", status_code=204, summary="Delete a rule (its open alerts are resolved)"
)
def delete_rule(session: DB, who: Admin, parts: Parts, rule_id: RuleIdPath) -> Response:
    before = alert_rules.spec_of(alert_rules.get(session, rule_id))
    _changed(session, parts, before, lambda: alert_rules.delete(session, who.label, rule_id))
    return Response(status_code=204)
