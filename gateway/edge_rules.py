"""The rules the centre's gateway evaluates itself, and their per-subject states, on disk.

The API sends the whole set (:class:`contract.edge.EdgeRules`) on the gateway's
downlink; :meth:`EdgeRules.replace` keeps it in the gateway's database (tables
``edge_rules`` and ``edge_states``) when its ``seq`` is newer than the set held,
so the rules apply after a reboot with the uplink still down. A rule whose JSON
no longer validates (a newer API) is skipped and counted; the others run.

:meth:`EdgeRules.evaluate` runs every rule whose device kinds match a reading
through :class:`alerting.evaluation.Evaluator` (the central engine's own
evaluation) with the subject's saved state, and saves the new states. The API
only sends rules whose scope includes the centre, so here a scope is matched
only by what the gateway knows: the device and its kind. Only rules a reading
decides run here (timers, absence and offline, need the central clocks).

Threads: :meth:`replace` runs on the central link's network thread,
:meth:`evaluate` on the ingest thread; one lock guards the connection and the
rule set.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from pydantic import ValidationError

from alerting.evaluation import Change, Evaluator, Reading, State
from alerting.rules import READING_CONDITIONS, Place, Rule, ScopeKind
from contract.edge import EdgeRules as EdgeRulesMessage
from gateway.sqlite import mapped, open_store

log = logging.getLogger(__name__)
STORE: Final = "edge_rules"
_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS edge_rules (
    gateway TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    rules TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS edge_states (
    rule TEXT NOT NULL,
    subject TEXT NOT NULL,
    state TEXT NOT NULL,
    PRIMARY KEY (rule, subject)
);
"""


@dataclass(frozen=True, slots=True)
class Raised:
    """One change of one rule's alert, from one reading."""

    rule: Rule
    change: Change
    reading: Reading


class EdgeRules:
    """The rule set of the gateway's centre and the states of its subjects."""

    def __init__(self, path: Path, gateway_id: str) -> None:
        self._gateway = gateway_id
        self._lock = threading.Lock()
        self._conn = open_store(path, _SCHEMA, STORE)
        self.seq = -1
        self.invalid = 0
        self._evaluators: list[Evaluator] = []
        self._kinds: frozenset[str] = frozenset()
        with mapped(STORE):
            row = self._conn.execute(
                "SELECT seq, rules FROM edge_rules WHERE gateway = ?", (gateway_id,)
            ).fetchone()
        if row is not None:
            self.seq = int(row[0])
            self._set(self._load(json.loads(row[1])))

    @property
    def kinds(self) -> frozenset[str]:
        """The device kinds some rule looks at (empty: nothing to evaluate)."""
        return self._kinds

    @property
    def rules(self) -> list[Rule]:
        with self._lock:
            return [e.rule for e in self._evaluators]

    def _load(self, specs: list[dict[str, object]]) -> list[Evaluator]:
        evaluators = []
        for spec in specs:
            try:
                rule = Rule.model_validate(spec)
            except ValidationError as exc:
                self.invalid += 1
                log.warning("event=edge_rule_invalid rule=%s error=%s", spec.get("id"), exc)
                continue
            if rule.enabled and rule.runs_at_edge and rule.condition.type in READING_CONDITIONS:
                evaluators.append(Evaluator(rule))
        return evaluators

    def replace(self, message: EdgeRulesMessage) -> bool:
        """Keep ``message``'s rules if it is newer than the set held; True if kept."""
        with self._lock:
            if message.seq <= self.seq:
                return False
            evaluators = self._load(message.rules)
            kept = {e.rule.id: e.rule.version for e in evaluators}
            with mapped(STORE), self._transaction():
                self._conn.execute(
                    "INSERT INTO edge_rules (gateway, seq, rules) VALUES (?, ?, ?)"
                    " ON CONFLICT(gateway) DO UPDATE SET seq = excluded.seq,"
                    " rules = excluded.rules",
                    (self._gateway, message.seq, json.dumps(message.rules)),
                )
                # a rule gone or changed starts afresh, as the central engine's does
                old = {e.rule.id: e.rule.version for e in self._evaluators}
                for rule_id, version in old.items():
                    if kept.get(rule_id) != version:
                        self._conn.execute("DELETE FROM edge_states WHERE rule = ?", (rule_id,))
            self.seq = message.seq
            self._set(evaluators)
            return True

    def _set(self, evaluators: list[Evaluator]) -> None:
        self._evaluators = evaluators
        self._kinds = frozenset(k.value for e in evaluators for k in e.rule.kinds())

    def evaluate(self, reading: Reading) -> list[Raised]:
        """Every rule's changes from ``reading``; the new states are saved."""
        with self._lock:
            matching = [e for e in self._evaluators if _applies(e.rule, reading)]
            if not matching:
                return []
            raised: list[Raised] = []
            with mapped(STORE), self._transaction():
                for evaluator in matching:
                    subject = evaluator.subject(reading)
                    state = self._state(evaluator.rule.id, subject)
                    new, changes = evaluator.on_reading(state, reading)
                    if new != state:
                        self._save(evaluator.rule.id, subject, new)
                    raised += [Raised(evaluator.rule, c, reading) for c in changes]
            return raised

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        """Reads then writes: the write lock first (``BEGIN IMMEDIATE`` waits for the
        outbox's writers; a deferred read transaction upgraded after another connection
        wrote fails at once with "database is locked"), rolled back on any error."""
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    def _state(self, rule_id: str, subject: str) -> State | None:
        row = self._conn.execute(
            "SELECT state FROM edge_states WHERE rule = ? AND subject = ?", (rule_id, subject)
        ).fetchone()
        return None if row is None else dict(json.loads(row[0]))

    def _save(self, rule_id: str, subject: str, state: State | None) -> None:
        if state is None:
            self._conn.execute(
                "DELETE FROM edge_states WHERE rule = ? AND subject = ?", (rule_id, subject)
            )
            return
        self._conn.execute(
            "INSERT INTO edge_states (rule, subject, state) VALUES (?, ?, ?)"
            " ON CONFLICT(rule, subject) DO UPDATE SET state = excluded.state",
            (rule_id, subject, json.dumps(state)),
        )

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def _applies(rule: Rule, reading: Reading) -> bool:
    if reading.kind not in {k.value for k in rule.kinds()}:
        return False
    if rule.scope.kind not in (ScopeKind.DEVICE, ScopeKind.DEVICE_KIND):
        return True  # the API sent it: its scope includes this centre
    place = Place(reading.centre, reading.device, reading.kind, None, None, None)
    return rule.scope.matches(place)
