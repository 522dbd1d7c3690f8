"""The evaluator states (``AlertCondition`` rows): all in memory, written at checkpoints.

The engine is the only writer of these rows, so it loads them once at start
and keeps them in memory; a round's changes go into an overlay that
:meth:`Conditions.flush` writes (one upsert per changed row, one delete per
forgotten one) in the round's transaction. :meth:`commit` merges the overlay
after that transaction committed; :meth:`discard` drops it after a failure (the
round is processed again from its redelivered messages).

A state put with ``deferred=True`` (a reading that moved a window or a timer
and changed no alert) need not be written in its own round: it waits in
:attr:`unsaved` for the next checkpoint (a flush with ``everything``), and the
engine holds back the acknowledgements of every message since the last
checkpoint. Killed in between, the engine gets those messages again and
replays them onto the saved states: a row written since (a state whose round
changed an alert) ignores the readings it has seen (not newer than its
``last``), a deferred one takes them again. So a row changes at most once per
checkpoint for the readings that only move it, not once per round (docs/alerts.md,
"Checkpoints"). A forecast window is kept in memory as a live
:class:`alerting.forecast.SocWindow` and written in its JSON form
(:func:`alerting.evaluation.jsonable`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final

from sqlalchemy import Table, bindparam, delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from alerting.evaluation import State, jsonable
from api.db.models import AlertCondition

TABLE: Table = AlertCondition.__table__  # type: ignore[assignment]
Key = tuple[str, str]  # (rule id, subject)
_UNSET: Final = object()
LIVE: Final = ("pending", "firing")  # the phases of a state with an open alert


class Conditions:
    def __init__(self) -> None:
        self._by_rule: dict[str, dict[str, State]] = {}
        self._overlay: dict[Key, State | None] = {}
        self._deferred: set[Key] = set()  # overlay keys that may wait for a checkpoint
        # committed to memory, not yet to the database (written at the next checkpoint)
        self.unsaved: dict[Key, State | None] = {}
        # subject -> {rule id: alert id} of the committed states with an open alert
        self._live: dict[str, dict[str, str]] = {}

    def load(self, session: Session) -> int:
        self._by_rule.clear()
        self._overlay.clear()
        self._deferred.clear()
        self.unsaved.clear()
        self._live.clear()
        count = 0
        for row in session.scalars(select(AlertCondition)):
            self._by_rule.setdefault(row.rule_id, {})[row.subject] = row.state
            self._index(row.rule_id, row.subject, row.state)
            count += 1
        return count

    def _index(self, rule_id: str, subject: str, state: State | None) -> None:
        if state is not None and state.get("phase") in LIVE and "alert" in state:
            self._live.setdefault(subject, {})[rule_id] = state["alert"]
            return
        alerts = self._live.get(subject)
        if alerts is not None and alerts.pop(rule_id, None) is not None and not alerts:
            del self._live[subject]

    def open_alerts(self, subject: str) -> Iterator[str]:
        """The alerts open (pending or firing) in the committed states of ``subject``,
        whatever its rules: without a look at every rule the subject has."""
        alerts = self._live.get(subject)
        if alerts:
            yield from alerts.values()

    def get(self, rule_id: str, subject: str) -> State | None:
        state = self._overlay.get((rule_id, subject), _UNSET)
        if state is not _UNSET:
            return state  # type: ignore[return-value]
        committed = self._by_rule.get(rule_id)
        return None if committed is None else committed.get(subject)

    def put(
        self, rule_id: str, subject: str, state: State | None, *, deferred: bool = False
    ) -> None:
        """Change a state in this round; ``deferred``: its row may wait for a checkpoint
        (only for a state whose change recorded nothing: see the module's docstring)."""
        key = (rule_id, subject)
        self._overlay[key] = state
        if deferred and state is not None:
            self._deferred.add(key)
        else:
            self._deferred.discard(key)

    def subjects(self, rule_id: str) -> Iterator[tuple[str, State]]:
        """The subjects of a rule with a state (the round's view), in no particular order."""
        committed = self._by_rule.get(rule_id, {})
        for subject, saved in list(committed.items()):
            current: State | None = self._overlay.get((rule_id, subject), saved)
            if current is not None:
                yield subject, current
        for (rule, subject), state in list(self._overlay.items()):
            if rule == rule_id and subject not in committed and state is not None:
                yield subject, state

    @property
    def pending(self) -> int:
        return len(self._overlay)

    def __len__(self) -> int:
        return sum(len(s) for s in self._by_rule.values())

    def flush(self, session: Session, *, everything: bool) -> None:
        """Write the round's states but the deferred ones; ``everything``: a checkpoint,
        the deferred ones and those of earlier rounds still unsaved too."""
        if everything:
            writing = {**self.unsaved, **self._overlay}
        else:
            deferred = self._deferred
            writing = {k: v for k, v in self._overlay.items() if k not in deferred}
        if not writing:
            return
        rows = [
            {"rule_id": r, "subject": s, "state": jsonable(state)}
            for (r, s), state in writing.items()
            if state is not None
        ]
        gone = [{"r": r, "s": s} for (r, s), state in writing.items() if state is None]
        if rows:
            dialect = session.get_bind().dialect.name
            insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
            statement = insert(TABLE)
            statement = statement.on_conflict_do_update(
                index_elements=[TABLE.c.rule_id, TABLE.c.subject],
                set_={"state": statement.excluded.state},
            )
            session.connection().execute(statement, rows)
        if gone:
            session.connection().execute(
                delete(TABLE).where(
                    TABLE.c.rule_id == bindparam("r"), TABLE.c.subject == bindparam("s")
                ),
                gone,
            )

    def commit(self, *, everything: bool) -> None:
        """The round's transaction committed (flushed with the same ``everything``)."""
        unsaved, deferred = self.unsaved, self._deferred
        for key, state in self._overlay.items():
            rule_id, subject = key
            states = self._by_rule.setdefault(rule_id, {})
            if state is None:
                states.pop(subject, None)
            else:
                states[subject] = state
            self._index(rule_id, subject, state)
            if key in deferred:
                unsaved[key] = state
            else:
                unsaved.pop(key, None)
        if everything:
            unsaved.clear()
        self._overlay.clear()
        deferred.clear()

    def discard(self) -> None:
        self._overlay.clear()
        self._deferred.clear()
