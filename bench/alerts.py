"""Alert engine benchmark: ``.venv/bin/python -m bench.alerts`` (``make bench`` runs it).

In one run:

(a) **Throughput**: readings/s one engine process evaluates with the default
    pack (18 rules, scope all) over ``--centres`` centres (a gateway, a router, a
    power unit and a pulse oximeter each), in process and without a broker:
    gateway envelopes of ``--records`` readings (router and power unit of a
    centre, one device minute each) handed to :meth:`api.alerts.engine.Engine.round`
    in the engine thread's rounds (at most ``--round`` messages and 1 MiB, in parts) with a
    timer tick every ``tick_s`` and a checkpoint when the service would make one
    (:func:`api.alerts.service.checkpoint_due`, a backlog); every round is one
    registry transaction (SQLite), so the figure includes writing the evaluator
    states; the garbage collector is set as the engine's processes set it
    (``runtime.collector.settle``). A tenth of the power units run on battery
    and drain (forecast alerts fire and fold repeats). Next to it, **one ingest
    worker** (``gramlink ingest`` as a process, on a Mosquitto and an InfluxDB of
    its own, timed as :mod:`bench.ingest` times it) on the *same* envelopes, and
    on :mod:`bench.ingest`'s own envelope case (500 readings each). The
    ``backlog`` run does the same with envelopes of ``--backlog-records``
    (500, as a gateway sends its backlog: one envelope per centre of
    ``--backlog-minutes`` device minutes), the engine and ingest on the same
    envelopes again (ingest's ``max_future_s`` widened to the envelopes' span,
    whose device times run into the future from now, so none is quarantined).
(b) **Detection latency**: from a clinical reading's publish to the central
    broker to the *webhook request* at a real local HTTP receiver. The engine as
    it runs in the API (:class:`api.alerts.service.AlertService`, its own
    persistent session, acknowledgements after each commit) and the notify
    worker (:class:`api.alerts.webhook.WebhookWorker`, woken by the engine after
    every round that queued notifications) in this process; a publisher process
    sends gateway envelopes of background readings at a given rate and, every
    ``--every`` seconds, an envelope with an SpO2 of 85 for a new patient.
    Measured at the demo's load (3 centres of 7 devices at 720x, a reading per
    device minute: 252 readings/s in an envelope per centre every 0.5 s) and at
    full rate (``--full-fractions`` of the readings/s measured in (a), over all
    the centres; by default 50 % and 80 %). Targets: p99 < 2 s at the demo's
    load, < 5 s at full rate.

``--pairs N`` runs instead the engine and the ingest worker on the same envelopes in
turn, N times (the ``engine`` and ``backlog`` cases among ``--runs``), and prints
each pair's ratio and their median: on a shared machine one run's ratio moves by a
third, so the verdict comes from the median.

Prints the machine, the date and the load average with the tables.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import resource
import secrets
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from api.alerts.consumer import Message
from api.alerts.engine import Engine
from api.alerts.lifecycle import Tally
from api.alerts.metrics import EngineMetrics
from api.alerts.service import GC_THRESHOLDS, ROUND_BYTES, AlertService, checkpoint_due
from api.alerts.settings import AlertsSettings
from api.alerts.webhook import DeliveryOptions, WebhookWorker
from api.db.models import Centre, Device, NotificationChannel
from api.db.session import make_engine, migrate, session_factory
from api.services import alert_pack
from bench import ingest
from contract.codec import encode_batch_parts
from gramlink.services import InfluxService, MosquittoService
from gramlink.services.process import free_port
from runtime.collector import settle

MINUTE = 60_000
KINDS = ("gateway", "router", "power", "pulse_oximeter")
DEMO_CENTRES, DEMO_DEVICES, DEMO_ACCELERATE = 3, 7, 720.0


# -- the registry and the readings ------------------------------------------------------------


def setup(db_url: str, centres: int) -> None:
    """A registry with the default pack and ``centres`` centres of four devices each."""
    engine = make_engine(db_url)
    migrate(engine)
    sessions = session_factory(engine)
    with sessions.begin() as s:
        alert_pack.install(s, "bench")
        for c in range(centres):
            centre = f"c{c}"
            s.add(Centre(id=centre, name=centre, district=f"d{c % 20}", state="s"))
            for kind in KINDS:
                s.add(Device(id=f"{centre}-{kind[:3]}", centre_id=centre, kind=kind, model="m"))
    engine.dispose()


def router_json(ts: int, seq: int, latency: float) -> bytes:
    return (
        b'{"v":1,"kind":"router","ts":%d,"seq":%d,"metrics":{"wan_up":true,'
        b'"wan_latency_ms":%.1f}}' % (ts, seq, latency)
    )


def power_json(ts: int, seq: int, soc: float, grid: bool) -> bytes:
    return (
        b'{"v":1,"kind":"power","ts":%d,"seq":%d,"metrics":{"battery_soc_pct":%.1f,'
        b'"battery_temp_c":30.0,"load_power_w":150.0,"grid_present":%s}}'
        % (ts, seq, soc, b"true" if grid else b"false")
    )


def spo2_json(ts: int, seq: int, ref: str) -> bytes:
    return (
        b'{"v":1,"kind":"pulse_oximeter","ts":%d,"seq":%d,"name":"spo2","metrics":'
        b'{"patient_ref":"%s","spo2_pct":85.0}}' % (ts, seq, ref.encode())
    )


def envelopes(
    centres: int, records: int, minutes: int, t0: int, rx: int | None = None
) -> list[tuple[str, bytes]]:
    """Per centre, ``minutes`` of router and power readings in envelopes of ``records``
    (``rx``: the gateways' receive time, else the device time)."""
    out: list[tuple[str, bytes]] = []
    per = max(records // 2, 1)
    for start in range(0, minutes, per):
        for c in range(centres):
            centre = f"c{c}"
            parts = []
            for m in range(start, min(start + per, minutes)):
                ts = t0 + m * MINUTE
                soc = max(5.0, 80.0 - m) if c % 10 == 0 else 70.0 + (m % 5)
                at = ts if rx is None else rx
                parts.append(
                    ("telemetry", f"{centre}-rou", router_json(ts, m + 1, 120 + m % 7), at)
                )
                parts.append(
                    ("telemetry", f"{centre}-pow", power_json(ts, m + 1, soc, c % 10 != 0), at)
                )
            gw = f"{centre}-gat"
            out.append(
                (f"gl/v1/{centre}/{gw}/_gateway/batch", encode_batch_parts(gw, start, parts))
            )
    return out


# -- (a) throughput ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Throughput:
    name: str
    readings: int
    seconds: float
    cpu_s: float
    note: str = ""

    @property
    def rate(self) -> float:
        return self.readings / self.seconds

    @property
    def cpu_us(self) -> float:
        return self.cpu_s / self.readings * 1e6


def rounds(messages: list[Message], round_max: int) -> list[list[Message]]:
    """The rounds the engine thread takes off a backlog (``AlertService._take``): at most
    ``round_max`` messages, no more once they hold ``ROUND_BYTES`` of payload."""
    out: list[list[Message]] = []
    part: list[Message] = []
    size = 0
    for m in messages:
        if part and (len(part) >= round_max or size >= ROUND_BYTES):
            out.append(part)
            part, size = [], 0
        part.append(m)
        size += len(m.payload)
    if part:
        out.append(part)
    return out


def no_edge(_: Tally) -> None:
    """Between two parts of a round: no alerts raised at the centres in this benchmark."""


def engine_throughput(
    args: argparse.Namespace, tmp: Path, records: int, minutes: int
) -> tuple[Throughput, str]:
    db_url = f"sqlite:///{tmp / f'throughput-{records}.sqlite'}"
    setup(db_url, args.centres)
    settings = AlertsSettings(db_url=db_url, influx_url="", round_max=args.round)
    db = make_engine(db_url)
    engine = Engine(settings, session_factory(db), EngineMetrics(CollectorRegistry()))
    engine.load()
    settle(GC_THRESHOLDS)  # as `gramlink alerts` and the API do once the engine is loaded
    raw = envelopes(args.centres, records, minutes, time.time_ns() // 1_000_000)
    messages = [Message(t, p, 0, 0, 0, time.monotonic()) for t, p in raw]
    readings = args.centres * minutes * 2
    started = time.perf_counter()
    cpu = time.process_time()
    parts = rounds(messages, min(args.round, settings.receive_maximum // 2))
    next_tick = time.monotonic()
    fired = unacked = checkpoints = taken = 0
    checkpointed = time.monotonic()
    hold_max = settings.receive_maximum // 2 if args.hold is None else args.hold
    for part in parts:
        tick = time.monotonic() >= next_tick
        taken += len(part)
        queued = len(messages) - taken  # a backlog: the rest is waiting
        age = time.monotonic() - checkpointed
        checkpoint = checkpoint_due(unacked + len(part), hold_max, age, queued=queued)
        # in parts, as the service evaluates a round (nothing to run between them here)
        fired += engine.round(part, tick=tick, checkpoint=checkpoint, between=no_edge).fired
        unacked += len(part)
        if engine.saved:
            unacked, checkpoints = 0, checkpoints + 1
            checkpointed = time.monotonic()
        if tick:
            next_tick = time.monotonic() + settings.tick_s
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    db.dispose()
    held = (
        f"states held {len(engine.conditions):,}, alerts fired {fired}, "
        f"{checkpoints} checkpoints in {len(parts)} rounds, "
        f"peak RSS {rss_mb:.0f} MB"
    )
    name = f"engine, default pack, {args.centres:,} centres, envelopes of {records}"
    return Throughput(name, readings, elapsed, cpu), held


def ingest_throughput(
    broker: MosquittoService,
    influx: InfluxService,
    tmp: Path,
    messages: list[tuple[str, bytes]],
    readings: int,
    name: str,
    minutes: int,
) -> Throughput:
    """One ``gramlink ingest`` worker draining ``messages`` from its session, timed as
    :mod:`bench.ingest` times it (subscription to last point written); ``minutes``: how
    far the envelopes' device times run ahead of now (none may be quarantined)."""
    client_id = f"bench-alerts-ingest-{uuid.uuid4().hex[:6]}"
    log = tmp / "ingest.log"
    settings = {"GRAMLINK_INGEST_MAX_FUTURE_S": str(minutes * 60 + 3600)}
    # makes its session (stopped before it subscribed, the preload would go nowhere)
    ingest.WorkerProcess(broker, influx, log, client_id, settings=settings).wait_subscribed().stop()
    ingest.preload(broker, messages)
    worker = ingest.WorkerProcess(broker, influx, log, client_id, settings=settings)
    try:
        metrics = lambda: worker.metrics() or {}  # noqa: E731
        # from its subscription, as bench.ingest times a worker (WorkerProcess.subscribed)
        start, cpu0 = worker.wait_subscribed().started, worker.cpu0
        deadline = time.monotonic() + 600
        while (written := metrics().get("gramlink_ingest_points_written_total", 0)) < readings:
            if time.monotonic() > deadline:
                raise RuntimeError("ingest did not write every reading within 600 s")
            ingest.pause_between_scrapes(written, readings)
        elapsed = time.perf_counter() - start
        cpu = ingest.cpu_seconds(worker.proc.pid) - cpu0
    finally:
        worker.stop()
        ingest.forget_sessions(broker, [client_id])
    return Throughput(name, readings, elapsed, cpu)


# -- (b) detection latency --------------------------------------------------------------------


class Receiver:
    """A local HTTP webhook receiver: when each patient's ``firing`` request arrived."""

    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}
        self.requests = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                at = time.time()
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                receiver.requests += 1
                alert = body.get("alert") or {}
                ref = alert.get("patient_ref")
                if body.get("event") == "firing" and ref and ref not in receiver.arrived:
                    receiver.arrived[ref] = at
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass(frozen=True)
class Load:
    name: str
    centres: int
    rate: float  # readings/s
    per_envelope: int  # readings per background envelope


def publish(
    host: str,
    port: int,
    user: str,
    password: str,
    load: Load,
    duration: float,
    every: float,
    out: Any,
) -> None:
    """The publisher process: background envelopes at ``load.rate``, and a clinical one
    every ``every`` s; sends back {patient_ref: publish time} and the readings sent."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.username_pw_set(user, password)
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.connect(host, port)
    client.loop_start()
    sent: dict[str, float] = {}
    per = max(load.per_envelope // 2, 1)
    interval = per * 2 / load.rate  # s between envelopes
    started = time.monotonic()
    t0 = time.time_ns() // 1_000_000
    minute = [0] * load.centres
    next_clinical = started + every
    k = readings = clinical = 0
    pending: list[mqtt.MQTTMessageInfo] = []  # the clinical readings' publishes
    last: mqtt.MQTTMessageInfo | None = None
    while time.monotonic() - started < duration:
        now = time.monotonic()
        wall = time.time_ns() // 1_000_000
        if now >= next_clinical:  # its own envelope, from the next centre's gateway
            c = clinical % load.centres
            centre, gw = f"c{c}", f"c{c}-gat"
            ref = secrets.token_hex(32)
            ts = t0 + minute[c] * MINUTE
            record = [("event", f"{centre}-pul", spo2_json(ts, clinical + 1, ref), wall)]
            sent[ref] = time.time()
            topic = f"gl/v1/{centre}/{gw}/_gateway/batch"
            payload = encode_batch_parts(gw, 1_000_000 + clinical, record)
            pending.append(client.publish(topic, payload, qos=1))
            clinical += 1
            next_clinical += every
        if now >= started + k * interval:
            c = k % load.centres
            centre, gw = f"c{c}", f"c{c}-gat"
            parts = []
            for _ in range(per):
                m = minute[c] = minute[c] + 1
                ts = t0 + m * MINUTE
                parts.append(("telemetry", f"{centre}-rou", router_json(ts, m, 120.0), wall))
                parts.append(("telemetry", f"{centre}-pow", power_json(ts, m, 70.0, True), wall))
            topic = f"gl/v1/{centre}/{gw}/_gateway/batch"
            last = client.publish(topic, encode_batch_parts(gw, k, parts), qos=1)
            readings += len(parts)
            k += 1
        wake = min(next_clinical, started + k * interval)
        time.sleep(max(0.0, wake - time.monotonic()))
    # a publisher behind its rate still has messages queued in paho: every one must reach
    # the broker (disconnecting drops them), and the rate is what it delivered
    for info in [*pending, last]:
        if info is not None:
            info.wait_for_publish(60)
    elapsed = time.monotonic() - started
    client.disconnect()
    client.loop_stop()
    out.put((sent, readings, elapsed))


@dataclass(frozen=True)
class Latency:
    load: Load
    published: float  # readings/s
    evaluated: float  # readings/s
    latencies: list[float]
    missing: int

    def q(self, fraction: float) -> float:
        data = self.latencies
        return data[min(len(data) - 1, int(len(data) * fraction))]


def detection_latency(
    args: argparse.Namespace, tmp: Path, broker: MosquittoService, load: Load
) -> Latency:
    db_url = f"sqlite:///{tmp / f'latency-{uuid.uuid4().hex[:6]}.sqlite'}"
    setup(db_url, load.centres)
    receiver = Receiver()
    db = make_engine(db_url)
    sessions = session_factory(db)
    with sessions.begin() as s:
        s.add(NotificationChannel(name="bench", url=receiver.url, secret="s" * 32))
    settings = AlertsSettings(
        db_url=db_url,
        mqtt_url=broker.url,
        mqtt_username=broker.admin_user,
        mqtt_password=SecretStr(broker.admin_password),
        client_id=f"bench-alerts-{uuid.uuid4().hex[:6]}",
        influx_url="",
    )
    ctx = mp.get_context("spawn")  # no threads carried over; the engine starts after
    out: Any = ctx.Queue()
    publisher = ctx.Process(
        target=publish,
        args=(
            broker.bind,
            broker.port,
            broker.admin_user,
            broker.admin_password,
            load,
            args.duration,
            args.every,
            out,
        ),
        daemon=True,
    )
    service = AlertService(settings, sessions, EngineMetrics(CollectorRegistry()))
    worker = WebhookWorker(sessions, DeliveryOptions(concurrency=4, timeout_s=5.0))
    service.on_notified = worker.wake
    try:
        service.start()
        worker.start()
        deadline = time.monotonic() + 30
        while not service.consumer.connected and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)  # the SUBACK
        evaluated0 = service.engine.evaluated
        publisher.start()
        sent, readings, elapsed = out.get(timeout=args.duration + 120)
        publisher.join(10)
        evaluated = service.engine.evaluated - evaluated0
        wait_until = time.monotonic() + 60
        while time.monotonic() < wait_until and not set(sent) <= set(receiver.arrived):
            time.sleep(0.1)
        evaluated = service.engine.evaluated - evaluated0
    finally:
        worker.close()
        service.close()
        receiver.close()
        db.dispose()
    found = sorted(
        receiver.arrived[ref] - at for ref, at in sent.items() if ref in receiver.arrived
    )
    return Latency(
        load,
        readings / elapsed,
        evaluated / elapsed,
        found,
        len(sent) - len(found),
    )


# -- the run ----------------------------------------------------------------------------------


def paired(args: argparse.Namespace, runs: set[str]) -> int:
    """``--pairs``: the engine and one ingest worker on the same envelopes, in turn."""
    tmp = Path(tempfile.mkdtemp(prefix="bench-alerts-"))
    broker = MosquittoService(tmp / "mosquitto", free_port(), secrets.token_urlsafe(16))
    influx = InfluxService(tmp / "influxdb", free_port(), secrets.token_urlsafe(16))
    cases = [
        (key, records, minutes)
        for key, records, minutes in (
            ("engine", args.records, args.minutes),
            ("backlog", args.backlog_records, args.backlog_minutes),
        )
        if key in runs
    ]
    rows: list[tuple[int, int, Throughput, Throughput]] = []
    try:
        broker.start()
        influx.start()
        for i in range(args.pairs):
            for key, records, minutes in cases:
                print(f"pair {i + 1}/{args.pairs}, envelopes of {records} ...", flush=True)
                own = tmp / f"pair-{i}-{key}"
                own.mkdir()
                engine, _ = engine_throughput(args, own, records, minutes)
                same = envelopes(args.centres, records, minutes, time.time_ns() // 1_000_000)
                readings = args.centres * minutes * 2
                worker = ingest_throughput(
                    broker, influx, own, same, readings, "one ingest worker", minutes
                )
                rows.append((i + 1, records, engine, worker))
    finally:
        influx.stop()
        broker.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print()
    print(ingest.machine())
    print(
        "| pair | envelopes of | engine readings/s | engine µs | ingest readings/s | ingest µs "
        "| engine / ingest |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for i, records, engine, worker in rows:
        print(
            f"| {i} | {records} | {engine.rate:,.0f} | {engine.cpu_us:.1f} | {worker.rate:,.0f} "
            f"| {worker.cpu_us:.1f} | {engine.rate / worker.rate:.0%} |"
        )
    for _key, records, _minutes in cases:
        ratios = [e.rate / w.rate for _i, r, e, w in rows if r == records]
        cpu = [w.cpu_us / e.cpu_us for _i, r, e, w in rows if r == records]
        ahead = sum(ratio >= 1 for ratio in ratios)
        print(
            f"envelopes of {records}: median engine / ingest {statistics.median(ratios):.0%} "
            f"(of {len(ratios)}: {min(ratios):.0%}-{max(ratios):.0%}); the engine kept up in "
            f"{ahead} of {len(ratios)}; by CPU per reading {statistics.median(cpu):.0%}"
        )
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--centres", type=int, default=1000)
    parser.add_argument(
        "--minutes",
        type=int,
        default=120,
        help="device minutes per centre, (a): 240,000 readings by default, a run of seconds "
        "(ingest is timed by scraping its metrics, which a busy worker answers 30-90 ms late)",
    )
    parser.add_argument("--records", type=int, default=10, help="readings per envelope, (a)")
    parser.add_argument(
        "--round", type=int, default=2000, help="most messages per round, (a) (the engine's)"
    )
    parser.add_argument(
        "--hold",
        type=int,
        default=None,
        help="messages held unacknowledged before a checkpoint, (a) (default: the engine's, "
        "half its Receive Maximum; 0: a checkpoint every round, as before checkpoints)",
    )
    parser.add_argument("--ingest-readings", type=int, default=300_000, help="bench.ingest's case")
    parser.add_argument(
        "--backlog-records", type=int, default=500, help="readings per envelope, backlog run"
    )
    parser.add_argument(
        "--backlog-minutes", type=int, default=250, help="device minutes per centre, backlog run"
    )
    parser.add_argument("--duration", type=float, default=30.0, help="s per latency run, (b)")
    parser.add_argument("--every", type=float, default=0.2, help="s between clinical readings")
    parser.add_argument(
        "--full-fractions", default="0.5,0.8", help="full rate(s), of (a)'s engine readings/s"
    )
    parser.add_argument(
        "--runs", default="engine,ingest,backlog,demo,full", help="a subset of these"
    )
    parser.add_argument(
        "--pairs",
        type=int,
        default=0,
        help="instead of the runs: this many pairs of the engine and one ingest worker on "
        "the same envelopes, in turn, for the engine and backlog cases among --runs; each "
        "pair's ratio and their median (one run's ratio moves by a third on a shared machine)",
    )
    args = parser.parse_args()
    runs = set(args.runs.split(","))
    if args.pairs:
        return paired(args, runs)
    tmp = Path(tempfile.mkdtemp(prefix="bench-alerts-"))
    broker = MosquittoService(tmp / "mosquitto", free_port(), secrets.token_urlsafe(16))
    influx = InfluxService(tmp / "influxdb", free_port(), secrets.token_urlsafe(16))
    rates: list[Throughput] = []
    pairs: list[tuple[Throughput, Throughput]] = []  # (engine, ingest) to compare
    latencies: list[Latency] = []
    held: list[str] = []  # what each engine run held
    try:
        engine_rate = 15_000.0
        # (engine run, envelope size, device minutes, the ingest run on the same envelopes)
        cases = [
            ("engine", args.records, args.minutes, "ingest"),
            ("backlog", args.backlog_records, args.backlog_minutes, "backlog"),
        ]
        engines: dict[str, Throughput] = {}
        for key, records, minutes, _ in cases:
            if key in runs:
                print(f"(a) engine throughput, envelopes of {records} ...", flush=True)
                result, state = engine_throughput(args, tmp, records, minutes)
                rates.append(result)
                held.append(state)
                engines[key] = result
        if "engine" in engines:
            engine_rate = engines["engine"].rate
        broker.start()
        for key, records, minutes, ingest_key in cases:
            if ingest_key not in runs:
                continue
            if not influx.running():
                influx.start()
            print(f"(a) one ingest worker on the same envelopes (of {records}) ...", flush=True)
            same = envelopes(args.centres, records, minutes, time.time_ns() // 1_000_000)
            result = ingest_throughput(
                broker,
                influx,
                tmp,
                same,
                args.centres * minutes * 2,
                f"one ingest worker, the same envelopes (of {records})",
                minutes,
            )
            rates.append(result)
            if key in engines:
                pairs.append((engines[key], result))
        if "ingest" in runs:
            print("(a) one ingest worker, bench.ingest's envelope case ...", flush=True)
            own = ingest.ingest_run(broker, influx, tmp, args.ingest_readings, True)
            result = Throughput(
                "one ingest worker, bench.ingest's envelopes (of 500)",
                own.readings,
                own.seconds,
                own.cpu_s,
            )
            rates.append(result)
            pairs += [(engine, result) for engine in engines.values()]
        demo = Load(
            "demo's load (3 centres x 7 devices at 720x)",
            DEMO_CENTRES,
            DEMO_CENTRES * DEMO_DEVICES * DEMO_ACCELERATE / 60,
            int(DEMO_DEVICES * DEMO_ACCELERATE / 60 / 2),
        )
        loads = [("demo", demo)] + [
            (
                "full",
                Load(
                    f"full rate: {float(f):.0%} of (a)'s engine rate, {args.centres:,} centres",
                    args.centres,
                    engine_rate * float(f),
                    args.records,
                ),
            )
            for f in args.full_fractions.split(",")
        ]
        for key, load in loads:
            if key in runs:
                print(
                    f"(b) detection latency, {load.name}, {load.rate:,.0f} readings/s ...",
                    flush=True,
                )
                latencies.append(detection_latency(args, tmp, broker, load))
    finally:
        if influx.running():
            influx.stop()
        if broker.running():
            broker.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    report(rates, held, pairs, latencies)
    missing = [lat for lat in latencies if lat.missing or not lat.latencies]
    return 1 if missing else 0


def report(
    rates: list[Throughput],
    held: list[str],
    pairs: list[tuple[Throughput, Throughput]],
    latencies: list[Latency],
) -> None:
    print()
    print(
        f"machine: {os.cpu_count()} cores, {platform.processor() or platform.machine()}; "
        f"{time.strftime('%Y-%m-%d %H:%M %Z')}; load average "
        f"{' '.join(f'{v:.2f}' for v in os.getloadavg())}"
    )
    if rates:
        print("| (a) run | readings | readings/s | CPU µs / reading |")
        print("|---|---:|---:|---:|")
        for r in rates:
            print(f"| {r.name} | {r.readings:,} | {r.rate:,.0f} | {r.cpu_us:.1f} |")
        for state in held:
            print(f"engine: {state}")
        for engine, other in pairs:
            print(f"{engine.name} / {other.name}: {engine.rate / other.rate:.0%} of its readings/s")
    if latencies:
        print()
        print(
            "| (b) load | published readings/s | evaluated readings/s | clinical readings "
            "| p50 ms | p99 ms | max ms | not notified |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
        for lat in latencies:
            if not lat.latencies:
                print(
                    f"| {lat.load.name} | {lat.published:,.0f} | {lat.evaluated:,.0f} | 0 "
                    f"| - | - | - | {lat.missing} |"
                )
                continue
            print(
                f"| {lat.load.name} | {lat.published:,.0f} | {lat.evaluated:,.0f} "
                f"| {len(lat.latencies)} | {statistics.median(lat.latencies) * 1000:,.0f} "
                f"| {lat.q(0.99) * 1000:,.0f} | {lat.latencies[-1] * 1000:,.0f} | {lat.missing} |"
            )


if __name__ == "__main__":
    sys.exit(main())
