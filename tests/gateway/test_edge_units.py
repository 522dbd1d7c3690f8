"""The gateway's edge rules store and its local outlets, without brokers."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from alerting.defaults import DEFAULT_PACK
from alerting.evaluation import Reading
from alerting.rules import Rule
from contract.edge import EdgeAlert, decode_alert
from contract.edge import EdgeRules as EdgeRulesMessage
from contract.metrics import DeviceKind
from gateway.edge_outlets import OutletOptions, Outlets, sms_text
from gateway.edge_rules import EdgeRules
from gateway.sqlite import connect
from tests.factories import wait_for

PATIENT = "ab" * 32


def spo2_rule(version: int = 1, below: float = 90) -> dict[str, object]:
    spec = DEFAULT_PACK["spo2-low"].model_dump(mode="json", by_alias=True)
    spec["condition"]["any"] = [{"metric": "spo2_pct", "op": "<", "value": below}]
    return Rule.model_validate({**spec, "id": "spo2", "version": version}).model_dump(
        mode="json", by_alias=True
    )


def reading(ts: int, spo2: float, seq: int) -> Reading:
    return Reading("c1", "oxi-1", "pulse_oximeter", ts, seq, {"spo2_pct": spo2}, PATIENT)


def test_a_stale_update_is_ignored_and_a_changed_rule_starts_afresh(tmp_path: Path) -> None:
    db = tmp_path / "gw.sqlite3"
    store = EdgeRules(db, "gw")
    assert store.replace(EdgeRulesMessage(seq=5, rules=[spo2_rule()]))
    assert not store.replace(EdgeRulesMessage(seq=4, rules=[]))  # a late redelivery
    assert [r.id for r in store.rules] == ["spo2"]
    (fired,) = store.evaluate(reading(1000, 85, 1))
    assert fired.change.what == "firing"
    assert [r.change.what for r in store.evaluate(reading(2000, 84, 2))] == ["repeat"]
    store.close()

    again = EdgeRules(db, "gw")  # a reboot: the rules and the states are on disk
    assert again.seq == 5
    assert [r.change.what for r in again.evaluate(reading(3000, 97, 3))] == ["resolved"]
    assert again.replace(EdgeRulesMessage(seq=6, rules=[spo2_rule(version=2, below=95)]))
    (fired,) = again.evaluate(reading(4000, 93, 4))  # under the new bound, a new alert
    assert fired.change.what == "firing" and fired.rule.version == 2
    again.close()


def test_an_evaluation_waits_for_the_outboxs_writer_instead_of_failing(tmp_path: Path) -> None:
    """The outbox writes the same file from its own connections (a backlog drain deletes
    rows all the time); an evaluation that read first and then found the file written
    failed with "database is locked" and stopped the gateway's local ingest."""
    db = tmp_path / "gw.sqlite3"
    store = EdgeRules(db, "gw")
    assert store.replace(EdgeRulesMessage(seq=1, rules=[spo2_rule()]))
    writer = connect(db)
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("INSERT INTO edge_states (rule, subject, state) VALUES ('other', 's', '{}')")
    outcome: list[object] = []

    def evaluate() -> None:
        try:
            outcome.extend(store.evaluate(reading(1000, 85, 1)))
        except Exception as exc:
            outcome.append(exc)

    thread = threading.Thread(target=evaluate)
    thread.start()
    thread.join(0.5)  # it waits for the writer meanwhile
    assert thread.is_alive()
    writer.execute("COMMIT")
    thread.join(10)
    (fired,) = outcome
    assert not isinstance(fired, Exception), fired
    assert fired.change.what == "firing"  # type: ignore[attr-defined]
    writer.close()
    store.close()


def test_a_rule_that_does_not_validate_is_skipped_and_the_others_run(tmp_path: Path) -> None:
    store = EdgeRules(tmp_path / "gw.sqlite3", "gw")
    broken = {**spo2_rule(), "id": "broken", "condition": {"type": "clinical", "kind": "router"}}
    assert store.replace(EdgeRulesMessage(seq=1, rules=[broken, spo2_rule()]))
    assert [r.id for r in store.rules] == ["spo2"] and store.invalid == 1
    store.close()


def alert(**over: object) -> EdgeAlert:
    values: dict[str, object] = {
        "alert_id": "al-" + "0" * 24,
        "state": "firing",
        "rule_id": "spo2",
        "rule_name": "SpO2 below 90%",
        "severity": "critical",
        "clinical": True,
        "centre": "c1",
        "device": "oxi-1",
        "kind": DeviceKind.PULSE_OXIMETER,
        "subject": f"c1/oxi-1/{PATIENT}",
        "ts": 1_700_000_000_000,
        "device_ts": 1_700_000_000_000,
        "seq": 1,
        "started_ms": 1_700_000_000_000,
        "raised_ms": 1_700_000_000_020,
        "value": 85.0,
        "metric": "spo2_pct",
        "patient_ref": PATIENT,
    }
    return EdgeAlert.model_validate({**values, **over})


def test_the_sms_text_names_the_rule_device_and_value_never_the_patient() -> None:
    text = sms_text(alert())
    assert "SpO2 below 90%" in text and "oxi-1" in text and "spo2_pct=85" in text
    assert PATIENT not in text and len(text) <= 160
    assert decode_alert(alert().model_dump_json().encode()) == alert()


def test_a_hook_that_hangs_is_killed_after_its_timeout_and_the_next_alert_still_runs(
    tmp_path: Path,
) -> None:
    out = tmp_path / "seen"
    branches = f"*resolved*) echo ok > {out};; *) sleep 30; echo late;;"
    script = f"sh -c 'read line; case \"$line\" in {branches} esac'"
    outlets = Outlets(OutletOptions(command=script, timeout_s=0.5))
    outlets.start()
    try:
        started = time.monotonic()
        outlets.submit(alert())  # hangs: killed at 0.5 s
        outlets.submit(alert(state="resolved"))
        wait_for(out.exists, 5, "the second alert's hook")
        assert time.monotonic() - started < 3
        assert outlets.counters.failed == 1 and "timed out" in outlets.counters.failures[0]
    finally:
        outlets.stop()
