"""The default rule pack (``alerting.defaults.DEFAULT_PACK``), installed idempotently.

Each pack rule is one row with its ``pack_key``; its id is the key (or the key
and a suffix if a user's rule took that id). A pack rule already installed is
never touched again, edited or not: installing twice changes nothing, and a
rule a user changed keeps the user's change. A pack rule someone deleted is
installed again (disable it instead to keep it off).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from alerting.defaults import DEFAULT_PACK
from alerting.rules import RuleSpec
from api.db.models import AlertRule
from api.services import alert_rules

Outcome = Literal["installed", "kept", "kept-edited"]


@dataclass(frozen=True)
class Installed:
    pack_key: str
    rule_id: str
    outcome: Outcome


def install(
    session: Session, actor: str, pack: dict[str, RuleSpec] | None = None
) -> list[Installed]:
    """Install what is missing of ``pack`` (default: the default pack), in pack order."""
    pack = DEFAULT_PACK if pack is None else pack
    present = {
        row.pack_key: row
        for row in session.scalars(select(AlertRule).where(AlertRule.pack_key.is_not(None)))
    }
    done = []
    for key, spec in pack.items():
        row = present.get(key)
        if row is not None:
            same = row.spec == alert_rules.spec_json(spec)
            done.append(Installed(key, row.id, "kept" if same else "kept-edited"))
            continue
        rule_id = key if session.get(AlertRule, key) is None else alert_rules.slug(key)
        row = alert_rules.create(session, actor, spec, rule_id, pack_key=key)
        done.append(Installed(key, row.id, "installed"))
    return done
