"""The reliability scenarios and how one is run and counted.

Each scenario starts a fresh :class:`~tests.reliability.rig.Rig`, lets readings
flow until InfluxDB has some, applies its fault (which returns once the fault
is over), lets the devices publish for :data:`AFTER_S` more seconds, then
counts every (device, seq) published against what InfluxDB stored.

Recovery time: from the fault's end until every reading the devices had
published by then is stored (polled every :data:`POLL_S`); ``None`` when that
never happens within :data:`RECOVERY_LIMIT_S` (readings were lost).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from gateway.settings import GatewaySettings
from gramlink.services.process import ServiceError
from tests.factories import wait_for
from tests.reliability.rig import Load, Rig
from tests.reliability.tally import BatchWatch, Published, Tally, stored, stored_upto

WARM_S = 3.0  # readings of this many seconds are stored before the fault
AFTER_S = 3.0  # devices keep publishing this long after the fault's end
POLL_S = 0.25
RECOVERY_LIMIT_S = 30.0
STALL_S = 10.0  # no more readings stored for this long: the rest is lost
OUTAGE_S = 10.0
RECEIPT_TIMEOUT_S = 3.0


def receipts_landed() -> bool:
    """Has this tree the gateway's storage receipts (issue #11, item 1)?"""
    return "receipt_timeout_s" in GatewaySettings.model_fields


def hold(seconds: float) -> None:
    """The outage itself: the scenario is a fault of this length, not a wait for a condition."""
    time.sleep(seconds)


@dataclass(frozen=True)
class Outcome:
    """What a fault reports: a note for the table, and for an outage of the gateway the
    readings the centre broker had to queue meanwhile."""

    note: str = ""
    queued: int | None = None


Fault = Callable[[Rig, Published], Outcome]


@dataclass(frozen=True)
class WithoutReceipts:
    """How a scenario fails on a tree without storage receipts (issue #11, items 1 and 7)."""

    reason: str
    always: bool  # failed in every run measured (a strict xfail), else only sometimes


@dataclass(frozen=True)
class Scenario:
    key: str  # test id and centre id
    title: str  # the table's row
    fault: Fault  # applies the fault; returns when it is over
    load: Load = field(default_factory=Load)
    gateway_env: dict[str, str] = field(default_factory=dict)
    without_receipts: WithoutReceipts | None = None  # how it fails on a tree without them


# --- faults -----------------------------------------------------------------------------------


def central_sigterm(rig: Rig, published: Published) -> Outcome:
    rig.central.stop()
    rig.restart(rig.central)
    return Outcome()


def central_sigkill(rig: Rig, published: Published) -> Outcome:
    with BatchWatch(rig.central, rig.centre) as watch:
        watch.next_batch()  # killed a few ms after it took (and acknowledged) a batch
        rig.central.kill()
    rig.restart(rig.central)
    return Outcome("killed a few ms after it took a batch")


def central_sigkill_queued(rig: Rig, published: Published) -> Outcome:
    """The broker holds readings for the ingest worker (down for a moment) when it dies:
    what it acknowledged since its last save of the persistence file is gone with it."""
    assert rig.ingest is not None
    rig.ingest.kill()
    hold(2)
    with BatchWatch(rig.central, rig.centre) as watch:
        watch.next_batch()
        rig.central.kill()
    rig.restart(rig.central)
    rig.restart_ingest()
    return Outcome("ingest down 2 s, broker killed a few ms after it took a batch")


def influx_past_receipt_timeout(rig: Rig, published: Published) -> Outcome:
    rig.influx.stop()
    hold(RECEIPT_TIMEOUT_S + 7)
    rig.restart(rig.influx)
    return Outcome(
        f"InfluxDB down {RECEIPT_TIMEOUT_S + 7:.0f} s, receipt timeout {RECEIPT_TIMEOUT_S:.0f} s"
    )


def _wait_writing(rig: Rig) -> None:
    """Until ingest stored 50 more points: it is in the middle of its write rounds."""
    before = sum(stored(rig.influx, rig.centre).values())
    wait_for(
        lambda: sum(stored(rig.influx, rig.centre).values()) > before + 50, 30, "ingest writing"
    )


def ingest_killed_mid_write(rig: Rig, published: Published) -> Outcome:
    assert rig.ingest is not None
    kills = 3
    for _ in range(kills):
        _wait_writing(rig)
        rig.ingest.kill()
        rig.restart_ingest()
    return Outcome(f"SIGKILL x{kills} while writing")


def gateway_killed_10s(rig: Rig, published: Published) -> Outcome:
    assert rig.gateway is not None
    rig.gateway.kill()
    before = len(published.snapshot())
    hold(OUTAGE_S)
    queued = len(published.snapshot()) - before
    rig.gateway.start()
    return Outcome(f"{queued} readings queued at the centre broker", queued)


def uplink_cut(rig: Rig, published: Published) -> Outcome:
    rig.proxy.cut()
    hold(OUTAGE_S)
    rig.proxy.restore()
    return Outcome(f"uplink refused {OUTAGE_S:.0f} s")


def gateway_sigkill(rig: Rig, published: Published) -> Outcome:
    assert rig.gateway is not None
    rig.gateway.kill()
    rig.gateway.start()
    return Outcome("restarted at once")


def ingest_sigkill(rig: Rig, published: Published) -> Outcome:
    assert rig.ingest is not None
    rig.ingest.kill()
    rig.restart_ingest()
    return Outcome("restarted at once")


def influx_down(rig: Rig, published: Published) -> Outcome:
    rig.influx.stop()
    hold(5)
    rig.restart(rig.influx)
    return Outcome("InfluxDB down 5 s")


def malformed_input(rig: Rig, published: Published) -> Outcome:
    hold(5)
    return Outcome("5 % of readings malformed")


RECEIPT_ENV = {"GRAMLINK_GATEWAY_RECEIPT_TIMEOUT_S": str(RECEIPT_TIMEOUT_S)}

SCENARIOS: tuple[Scenario, ...] = (
    Scenario("central-sigterm", "central broker restarted (SIGTERM)", central_sigterm),
    Scenario("central-sigkill", "central broker SIGKILLed and restarted", central_sigkill),
    Scenario("central-sigkill-queued", "central broker SIGKILLed, readings queued for ingest",
             central_sigkill_queued, without_receipts=WithoutReceipts(
                 "the gateway deletes a batch on the broker's PUBACK: what the broker "
                 "acknowledged since its last save dies with it (lost), and a batch ingest "
                 "had written goes again under model=unknown (duplicated)", always=True)),
    Scenario("influx-past-receipt", "InfluxDB down past the receipt timeout",
             influx_past_receipt_timeout, gateway_env=RECEIPT_ENV),
    Scenario("ingest-kill-mid-write", "ingest SIGKILLed between write and receipt",
             ingest_killed_mid_write, without_receipts=WithoutReceipts(
                 "a batch written before the kill is delivered again while ingest has not yet "
                 "seen the device's birth: a second point under model=unknown", always=False)),
    Scenario("gateway-kill-10s", "gateway SIGKILLed for 10 s", gateway_killed_10s),
    Scenario("uplink-cut", "uplink cut", uplink_cut),
    Scenario("gateway-sigkill", "gateway SIGKILL", gateway_sigkill),
    Scenario("ingest-sigkill", "ingest SIGKILL", ingest_sigkill),
    Scenario("influx-down", "InfluxDB down", influx_down),
    Scenario("malformed", "malformed input", malformed_input, load=Load(malformed_rate=0.05)),
)  # fmt: skip


# --- running one -------------------------------------------------------------------------------


def _highest(keys: set[tuple[str, int]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for device, seq in keys:
        out[device] = max(seq, out.get(device, -1))
    return out


def _recovery(rig: Rig, upto: set[tuple[str, int]], fault_end: float) -> float | None:
    highest = _highest(upto)
    want = {d: sum(1 for dev, _ in upto if dev == d) for d in highest}
    deadline = fault_end + RECOVERY_LIMIT_S
    while time.monotonic() < deadline:
        rig.alive()
        try:
            have = stored_upto(rig.influx, rig.centre, highest)
        except Exception:  # InfluxDB still starting: not recovered yet
            have = {}
        if have and all(have.get(d, 0) >= n for d, n in want.items()):
            return time.monotonic() - fault_end
        time.sleep(POLL_S)
    return None


def _settle(rig: Rig, published: set[tuple[str, int]]) -> None:
    """Until every published reading is stored, or none more arrives for STALL_S."""
    last, progress_at = -1, time.monotonic()
    while (count := len(published & set(stored(rig.influx, rig.centre)))) < len(published):
        rig.alive()
        if count != last:
            last, progress_at = count, time.monotonic()
        elif time.monotonic() - progress_at > STALL_S:
            return
        time.sleep(0.5)


def _gateway_quarantined(rig: Rig) -> int:
    total = 0
    for db in (rig.workdir / "gateway").glob("*.sqlite3"):
        conn = sqlite3.connect(db)
        try:
            row = conn.execute("SELECT value FROM meta WHERE key = 'quarantined_total'").fetchone()
        except sqlite3.Error:
            row = None
        finally:
            conn.close()
        total += int(row[0]) if row else 0
    return total


def _start_rig(workdir: Path, centre: str, scenario: Scenario, attempts: int = 3) -> Rig:
    """A started rig; new ports when one picked was taken meanwhile (a busy machine's
    outgoing connections use the same range as :func:`free_port`)."""
    for attempt in range(1, attempts + 1):
        rig = Rig(workdir / f"try{attempt}", centre, scenario.load, scenario.gateway_env)
        try:
            rig.start()
            return rig
        except ServiceError as exc:
            rig.close()
            if "in use" not in str(exc) or attempt == attempts:
                raise
    raise AssertionError("unreachable")


def run(scenario: Scenario, workdir: Path) -> Tally:
    """One scenario from start to teardown; every process it started is ended."""
    centre = f"rel-{scenario.key}"[:32]
    rig = _start_rig(workdir, centre, scenario)
    published: Published | None = None
    try:
        published = Published(rig.centre_broker, centre).start()
        published.probe(rig.influx)
        fleet = rig.start_fleet()
        flowing = int(scenario.load.rate * WARM_S)
        wait_for(
            lambda: rig.alive() and len(stored(rig.influx, centre)) >= flowing,
            60,
            "readings flowing to storage",
        )

        outcome = scenario.fault(rig, published)
        fault_end = time.monotonic()
        upto = published.snapshot()
        stopper = threading.Timer(AFTER_S, fleet.stop, kwargs={"drain_s": 10})
        stopper.start()
        recovery_s = _recovery(rig, upto, fault_end)
        stopper.join()
        stats = fleet.stats()
        sent = published  # bound for the lambda below
        wait_for(
            lambda: len(sent.snapshot()) + sent.malformed >= stats.readings,
            15,
            "the tally to see every reading the devices sent",
        )
        keys = published.snapshot()
        _settle(rig, keys)
        points = stored(rig.influx, centre)
        note = outcome.note
        if scenario.load.malformed_rate:
            note += f": {published.malformed} sent, {_gateway_quarantined(rig)} quarantined"
        return Tally.of(
            scenario.title, keys, points, published.malformed, recovery_s, note, outcome.queued
        )
    finally:
        if published is not None:
            published.close()
        rig.close()
