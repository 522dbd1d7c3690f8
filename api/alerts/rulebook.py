"""The enabled rules, as evaluators indexed by the device kinds they look at.

Read from the registry at start and again every ``refresh_s`` (the API changes
rules while the engine runs). A stored rule that no longer validates (a
contract change) is skipped and logged once a minute; the others keep running.
A refresh names the rules that are gone (deleted or disabled), so the engine
can close what they had open.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from alerting.evaluation import Evaluator
from alerting.rules import Absence, Clinical, Offline, Rule, ScopeKind, SolarYield
from api.db.models import AlertRule
from runtime.logs import Throttle

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Loaded:
    """A rule, its evaluator and what the engine asks of it on every reading."""

    rule: Rule
    evaluator: Evaluator
    solar: bool  # needs the centre's clear-sky expectation
    everywhere: bool  # scope all: no place to match
    timer: bool  # evaluated on the clock too (absence, offline)
    centre_offline: bool  # a gateway's Last Will held: its subject is the centre
    inhibitable: bool  # suppressed while the device's centre is offline
    per_patient: bool  # subject: device and patient (clinical), else the device

    @classmethod
    def of(cls, rule: Rule) -> Loaded:
        c = rule.condition
        device_offline = isinstance(c, Offline) and c.target == "device"
        return cls(
            rule=rule,
            evaluator=Evaluator(rule, live_windows=True),
            solar=isinstance(c, SolarYield),
            everywhere=rule.scope.kind is ScopeKind.ALL,
            timer=isinstance(c, Absence | Offline),
            centre_offline=isinstance(c, Offline) and c.target == "gateway",
            inhibitable=isinstance(c, Absence) or device_offline,
            per_patient=isinstance(c, Clinical),
        )


class RuleBook:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        refresh_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sessions = sessions
        self._refresh_s = refresh_s
        self._clock = clock
        self._loaded_at = -1e18
        self._versions: dict[str, tuple[int, object]] = {}
        self.rules: dict[str, Loaded] = {}
        self._by_kind: dict[str, list[Loaded]] = {}
        self.generation = 0  # grows with every refresh (what was derived from the rules is stale)
        self._throttle = Throttle(log)

    def due(self) -> bool:
        return self._clock() - self._loaded_at >= self._refresh_s

    def expire(self) -> None:
        """Read the rules again at the next round (someone acted on an alert)."""
        self._loaded_at = -1e18

    def refresh(self) -> list[Loaded]:
        """Read the rules again; the rules no longer enabled (deleted or disabled)."""
        with self._sessions() as session:
            rows = session.scalars(select(AlertRule).where(AlertRule.enabled.is_(True))).all()
        rules: dict[str, Loaded] = {}
        versions: dict[str, tuple[int, object]] = {}
        for row in rows:
            stamp = (row.version, row.updated_at)
            versions[row.id] = stamp
            if self._versions.get(row.id) == stamp and row.id in self.rules:
                rules[row.id] = self.rules[row.id]
                continue
            try:
                rule = Rule.model_validate(
                    {**row.spec, "id": row.id, "version": row.version, "enabled": True}
                )
            except ValidationError as exc:
                self._throttle.warning("alert_rule_invalid", key=row.id, rule=row.id, error=exc)
                continue
            rules[row.id] = Loaded.of(rule)
        by_kind: dict[str, list[Loaded]] = {}
        for loaded in rules.values():
            if isinstance(loaded.rule.condition, Offline):
                continue  # presence, not readings
            for kind in loaded.rule.kinds():
                by_kind.setdefault(kind.value, []).append(loaded)
        gone = [loaded for rule_id, loaded in self.rules.items() if rule_id not in versions]
        self.rules, self._versions, self._by_kind = rules, versions, by_kind
        self._loaded_at = self._clock()
        self.generation += 1
        return gone

    def for_kind(self, kind: str) -> list[Loaded]:
        """The rules a reading of ``kind`` is evaluated by (not offline rules)."""
        return self._by_kind.get(kind, [])

    def offline(self) -> list[Loaded]:
        return [r for r in self.rules.values() if isinstance(r.rule.condition, Offline)]

    def timers(self) -> list[Loaded]:
        return [r for r in self.rules.values() if r.timer]
