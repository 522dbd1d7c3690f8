"""Gateway benchmark: live throughput, backlog drain, priority lane, byte cap, SIGKILL.

Runs two real Mosquitto brokers (local, central) and the gateway as a subprocess
(``python -m gramlink gateway``), like in the field. The collector (central
side, admin account) runs in this process and counts (device, seq) pairs; it
stands in for ingest's storage receipts too: every ``RECEIPT_ROUND_S`` (ingest's
default batch age) it publishes one receipt naming the batches it got since the
last, and counts their bytes as the downlink cost of receipts.

    .venv/bin/python -m bench.gateway [--backlog 1000000] [--live 30000] [--kill-backlog 200000]
        [--clinical-rate 5] [--cap 50000 --cap-backlog 300000 --cap-s 60]

The backlog is written straight into the gateway's outbox while the gateway is
stopped (what an outage leaves behind), then the gateway is started and timed
until the central broker got every reading, while a live device publishes
``--live-rate`` readings/s through the local broker and their end-to-end delay
is measured. Meanwhile a pulse oximeter publishes ``--clinical-rate`` readings/s
(the priority lane): their delay to the central broker is measured while the
backlog is still draining (p50/p99). With ``--store`` an ingest worker
stores the batches in a real InfluxDB and its storage receipts time each
clinical reading's arrival there; with ``--alerts`` the central alert engine
(``gramlink alerts``, default pack, :mod:`bench._gateway_alerts`) runs on the
central broker, the gateway is given the default pack's edge rules over its
downlink (as the API sends them: it raises each clinical alert itself and sends
it upstream in its priority lane, read by the engine's edge session) and each
clinical reading (an SpO2 of 85, a patient of its own) is timed until its alert
row is committed in the registry. The priority lane's
figures of issue #13 in one command::

    .venv/bin/python -m bench.gateway --skip-live --cap 0 --kill-backlog 0 \\
        --store --alerts --clinical-rate 10

The byte-cap stage drains a ``--cap-backlog`` backlog for ``--cap-s`` seconds
with ``GRAMLINK_GATEWAY_UPLINK_MAX_BYTES_PER_S=--cap`` and reports the rate of
envelope bytes (compressed payloads) the central broker received, against the
cap, and the delay of live bulk and clinical readings under it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from bench._gateway_alerts import CentralAlerts, give_edge_rules, patient_id
from bench.ingest import WorkerProcess
from contract.codec import decode
from contract.edge import alert_filter, decode_alert
from contract.receipts import decode_receipt, encode_receipt, receipt_topic
from contract.topics import Channel
from gateway.outbox import BULK, NewRow, Outbox
from gateway.uplink import publish_packet_bytes
from gramlink.services import InfluxService, MosquittoService
from gramlink.services.process import free_port

PUBACK = 4
RECEIPT_ROUND_S = 0.2  # one receipt per gateway per write round (ingest's batch age)
CENTRE = "bench"
GW = f"{CENTRE}-gw"
KEY = secrets.token_hex(16)
TS0 = int(time.time() * 1000) - 86_400_000  # a day ago: plausible device times
TEMPLATE = (
    b'{"v":1,"kind":"router","ts":%d,"seq":%d,"metrics":{"uptime_s":%d,"wan_up":true,'
    b'"wan_latency_ms":%.1f,"wifi_clients":%d,"cpu_pct":%.1f,"mem_pct":%.1f}}'
)


CLINICAL = (
    b'{"v":1,"kind":"pulse_oximeter","ts":%d,"seq":%d,'
    b'"metrics":{"patient_id":"%s","spo2_pct":85.0}}'
)


def clinical(rng: random.Random, seq: int) -> bytes:
    """An SpO2 of 85 (below the default pack's 90) for a patient of its own: one alert each."""
    return CLINICAL % (int(time.time() * 1000), seq, patient_id(seq).encode())


def reading(rng: random.Random, seq: int) -> bytes:
    return TEMPLATE % (
        TS0 + seq * 1000,
        seq,
        seq * 10,
        rng.uniform(40, 900),
        rng.randint(0, 40),
        rng.uniform(0, 100),
        rng.uniform(10, 90),
    )


class Collector:
    """Central side: counts distinct (device, seq), wire bytes, live delays."""

    def __init__(self, broker: MosquittoService) -> None:
        self.lock = threading.Lock()
        self.seen: set[tuple[str, int]] = set()
        self.records = 0
        self.batches = 0
        self.wire_bytes = 0
        self.plain_bytes = 0
        self.receipt_bytes = 0  # receipts: PUBLISH to the gateway, MQTT framing included
        self.receipts = 0
        self.unreceipted: dict[str, list[int]] = {}
        self.receipting = True  # False: an ingest worker stores and receipts (--store)
        self.stored: dict[int, float] = {}  # clinical seq -> its storage receipt's arrival
        self._clinical_in: dict[int, list[int]] = {}  # batch seq -> the clinical seqs in it
        self.live_delays: list[float] = []
        self.live_sent: dict[int, float] = {}
        self.clinical_sent: dict[int, float] = {}
        self.clinical: list[tuple[float, float]] = []  # (arrival, delay)
        self.clinical_at: dict[int, float] = {}  # clinical seq -> arrival at central
        self.edge_at: dict[str, float] = {}  # patient_ref -> the gateway's alert at central
        self.alerts: CentralAlerts | None = None  # the central engine, when it runs
        # (arrival, compressed bytes, only clinical records: exempt from the byte cap)
        self.envelopes: list[tuple[float, int, bool]] = []
        self.last_backlog_arrival = 0.0
        self.probed = False
        self.last_arrival = 0.0
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id="bench-collector", protocol=mqtt.MQTTv5
        )
        client.username_pw_set(broker.admin_user, broker.admin_password)
        client.on_message = self._on_message
        client.on_connect = lambda c, *a: c.subscribe(
            [
                (f"gl/v1/{CENTRE}/+/_gateway/batch", 1),
                (f"gl/v1/{CENTRE}/+/_gateway/receipt", 1),
                (alert_filter(CENTRE), 1),
            ]
        )
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        client.connect(broker.bind, broker.port, clean_start=False, properties=props)
        client.loop_start()
        self.client = client
        self._stop = threading.Event()
        threading.Thread(target=self._receipting, name="receipts", daemon=True).start()

    def _receipting(self) -> None:
        while not self._stop.wait(RECEIPT_ROUND_S):
            with self.lock:
                due, self.unreceipted = self.unreceipted, {}
            if not self.receipting:
                continue
            for gw, seqs in due.items():
                topic, payload = receipt_topic(CENTRE, gw), encode_receipt(gw, seqs)
                self.client.publish(topic, payload, qos=1)
                with self.lock:
                    self.receipts += 1
                    self.receipt_bytes += publish_packet_bytes(topic, len(payload))

    def reset(self) -> None:
        with self.lock:
            self.seen.clear()
            self.receipt_bytes = self.receipts = 0
            self.records = self.batches = self.wire_bytes = self.plain_bytes = 0
            self.live_delays.clear()
            self.live_sent.clear()
            self.clinical_sent.clear()
            self.clinical.clear()
            self.clinical_at.clear()
            self.edge_at.clear()
            self.envelopes.clear()
            self.stored.clear()
            self._clinical_in.clear()
            self.probed = False

    def _on_receipt(self, now: float, payload: bytes) -> None:
        """Ingest stored these batches in InfluxDB: time the clinical readings they held."""
        if self.receipting:
            return  # our own receipts
        receipt = decode_receipt(payload)
        with self.lock:
            for first, last in receipt.batches():
                for seq in [s for s in self._clinical_in if first <= s <= last]:
                    for reading_seq in self._clinical_in.pop(seq):
                        self.stored.setdefault(reading_seq, now)

    def _on_message(self, c: mqtt.Client, u: object, msg: mqtt.MQTTMessage) -> None:
        now = time.monotonic()
        if msg.topic.endswith("/_gateway/receipt"):
            self._on_receipt(now, bytes(msg.payload))
            return
        if msg.topic.endswith("/_gateway/alert"):  # a clinical alert the gateway raised
            ref = decode_alert(bytes(msg.payload)).patient_ref
            if ref is not None:
                with self.lock:
                    self.edge_at.setdefault(ref, now)
            return
        batch = json.loads(zlib.decompress(msg.payload))
        with self.lock:
            self.batches += 1
            only = all(r["dev"] == "oxi" for r in batch["records"])
            self.envelopes.append((now, len(msg.payload), only))
            self.unreceipted.setdefault(batch["gw"], []).append(batch["seq"])
            self.wire_bytes += publish_packet_bytes(msg.topic, len(msg.payload)) + PUBACK
            for r in batch["records"]:
                dev, seq = r["dev"], r["p"]["seq"]
                if dev == "probe":  # the gateway is subscribed on the local broker
                    self.probed = True
                    continue
                if dev == "oxi":  # clinical: timed, not counted with the bulk
                    sent = self.clinical_sent.get(seq)
                    if sent is not None:
                        self.clinical.append((now, now - sent))
                        self.clinical_at.setdefault(seq, now)
                        self._clinical_in.setdefault(batch["seq"], []).append(seq)
                    continue
                self.records += 1
                self.seen.add((dev, seq))
                plain = len(json.dumps(r["p"], separators=(",", ":")))
                self.plain_bytes += publish_packet_bytes(f"gl/v1/{CENTRE}/{dev}/telemetry", plain)
                self.plain_bytes += PUBACK
                if dev == "live":
                    sent = self.live_sent.get(seq)
                    if sent is not None:
                        self.live_delays.append(now - sent)
                else:
                    self.last_backlog_arrival = now
            self.last_arrival = now

    def distinct(self) -> int:
        with self.lock:
            return len(self.seen)


class LivePublisher(threading.Thread):
    """A device publishing ``rate`` readings/s through the local broker (``clinical``:
    a pulse oximeter, device ``oxi``; else a router, device ``live``)."""

    def __init__(
        self, local: MosquittoService, collector: Collector, rate: float, clinical: bool = False
    ) -> None:
        super().__init__(daemon=True)
        self.collector = collector
        self.rate = rate
        self.clinical = clinical
        self.stop = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.username_pw_set(local.admin_user, local.admin_password)
        self.client.connect(local.bind, local.port)
        self.client.loop_start()
        # paho drops QoS 1 publishes queued before the first CONNACK (clean start):
        # counting those as sent made the drain wait forever for readings never sent
        wait(self.client.is_connected, 30, "the live publisher connected")
        self.sent = 0

    def run(self) -> None:
        rng = random.Random(7)
        seq = 0
        device, make = ("oxi", clinical) if self.clinical else ("live", reading)
        sent = self.collector.clinical_sent if self.clinical else self.collector.live_sent
        alerts = self.collector.alerts if self.clinical else None
        while not self.stop.wait(1 / self.rate):
            if alerts is not None:
                alerts.expect(seq)
            with self.collector.lock:
                sent[seq] = time.monotonic()
            self.client.publish(f"gl/v1/{CENTRE}/{device}/telemetry", make(rng, seq), qos=1)
            seq += 1
            self.sent = seq

    def close(self) -> None:
        self.stop.set()
        self.join(5)
        self.client.disconnect()
        self.client.loop_stop()


def start_gateway(
    local: MosquittoService,
    central: MosquittoService,
    data: Path,
    *,
    centre: str = CENTRE,
    extra_env: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """A gateway subprocess between ``local`` and ``central``, both logged in as admin."""
    env = dict(os.environ)
    env.update(
        {
            "GRAMLINK_GATEWAY_PSEUDONYM_KEY": KEY,
            "GRAMLINK_GATEWAY_LOCAL_USERNAME": local.admin_user,
            "GRAMLINK_GATEWAY_LOCAL_PASSWORD": local.admin_password,
            "GRAMLINK_GATEWAY_UPLINK_USERNAME": central.admin_user,
            "GRAMLINK_GATEWAY_UPLINK_PASSWORD": central.admin_password,
            **(extra_env or {}),
        }
    )
    argv = [sys.executable, "-m", "gramlink", "gateway", "--centre", centre]
    argv += ["--local-url", local.url, "--uplink-url", central.url, "--data-dir", str(data)]
    argv += ["--log-level", "warning", "--health-interval-s", "3600"]
    return subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL)


def until_subscribed(local: MosquittoService, collector: Collector) -> None:
    """Publish probe readings until one crosses the gateway: before its first
    subscription on the local broker, what a device publishes reaches nobody."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.username_pw_set(local.admin_user, local.admin_password)
    client.connect(local.bind, local.port)
    client.loop_start()
    rng = random.Random(5)
    deadline = time.monotonic() + 60
    seq = 0
    while not collector.probed:
        if time.monotonic() > deadline:
            raise SystemExit("the gateway never relayed a probe reading")
        client.publish(f"gl/v1/{CENTRE}/probe/telemetry", reading(rng, seq), qos=1)
        seq += 1
        time.sleep(0.5)
    client.disconnect()
    client.loop_stop()


def wait(check: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)


def prefill(db: Path, n: int, devices: int = 100) -> float:
    """Write ``n`` readings into the (stopped) gateway's outbox, as an outage leaves them."""
    rng = random.Random(1)
    sample = reading(rng, 0)
    decode(Channel.TELEMETRY, sample)  # the template is a valid contract message
    box = Outbox(db, 8 * 1024**3, "normal")
    t0 = time.monotonic()
    now = int(time.time() * 1000)
    chunk = 20_000
    for start in range(0, n, chunk):
        rows = []
        for i in range(start, min(n, start + chunk)):
            dev, seq = f"dev-{i % devices}", i // devices
            rows.append(NewRow(BULK, dev, "telemetry", reading(rng, seq), now))
        box.append(rows)
        print(f"  prefill {min(n, start + chunk):>9,}/{n:,}", end="\r", flush=True)
    box.close()
    print()
    return time.monotonic() - t0


def live_throughput(local: MosquittoService, collector: Collector, n: int) -> tuple[float, float]:
    collector.reset()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.username_pw_set(local.admin_user, local.admin_password)
    client.max_inflight_messages_set(1000)
    client.connect(local.bind, local.port)
    client.loop_start()
    rng = random.Random(3)
    t0 = time.monotonic()
    for i in range(n):
        client.publish(f"gl/v1/{CENTRE}/dev-{i % 20}/telemetry", reading(rng, i // 20), qos=1)
    wait(lambda: collector.distinct() >= n, 600, "live readings")
    elapsed = collector.last_arrival - t0
    client.disconnect()
    client.loop_stop()
    return n / elapsed, elapsed


def drain(
    local: MosquittoService,
    central: MosquittoService,
    collector: Collector,
    data: Path,
    n: int,
    live_rate: float,
    kill_at: float | None,
    clinical_rate: float = 0.0,
    store: bool = False,
    alerts_pause_s: float = 0.0,
) -> dict[str, float]:
    collector.reset()
    if collector.alerts is not None:
        collector.alerts.reset()
    t_fill = prefill(data / f"{CENTRE}.sqlite3", n)
    t0 = time.monotonic()
    gateway = start_gateway(local, central, data)
    until_subscribed(local, collector)
    if collector.alerts is not None:  # as the API would: the gateway raises clinical alerts too
        held = give_edge_rules(central, CENTRE, GW)
        print(f"  the gateway holds {held} edge rules (default pack)", flush=True)
    live = LivePublisher(local, collector, live_rate)
    oxi = LivePublisher(local, collector, clinical_rate, clinical=True) if clinical_rate else None
    live.start()
    alerts = collector.alerts
    if alerts is not None and alerts_pause_s:
        # the engine stopped while the drain goes on: its bulk session fills with the
        # backlog as behind a drain faster than the engine; clinical readings start after
        print(f"  the central alert engine stopped for {alerts_pause_s:.0f} s", flush=True)
        alerts.proc.send_signal(signal.SIGSTOP)
        time.sleep(alerts_pause_s)
        alerts.proc.send_signal(signal.SIGCONT)
        held = collector.distinct()
        print(f"  ... and continued, {held:,} readings at the central broker", flush=True)
    if oxi is not None:
        oxi.start()
    kills = 0
    evaluated_at_end = 0.0
    try:
        last = 0
        while collector.distinct() < n + live.sent or live.sent == 0:
            time.sleep(0.5)
            got = collector.distinct()
            rate = (got - last) * 2
            last = got
            print(f"  drained {got:>9,}/{n:,}  ~{rate:,.0f}/s", end="\r", flush=True)
            if kill_at is not None and kills == 0 and got >= kill_at * n:
                gateway.send_signal(signal.SIGKILL)  # a power cut during the drain
                gateway.wait(10)
                kills = 1
                print(f"\n  SIGKILL at {got:,} readings; restarting", flush=True)
                gateway = start_gateway(local, central, data)
            if time.monotonic() - t0 > 1200:
                raise SystemExit("drain took more than 20 minutes")
            if got >= n and live.sent:
                live.stop.set()
                if oxi is not None:
                    oxi.stop.set()
        print()
        elapsed = collector.last_arrival - t0
        drained_at = time.monotonic()
        if alerts is not None:  # what the engine's bulk session still held
            evaluated_at_end = alerts.evaluated()
    finally:
        live.close()
        if oxi is not None:
            oxi.close()
        wait(lambda: collector.distinct() >= n + live.sent, 60, "last live readings")
        gateway.send_signal(signal.SIGTERM)
        gateway.wait(30)
    backlog_seen = sum(1 for dev, _ in collector.seen if dev.startswith("dev-"))
    delays = sorted(collector.live_delays)
    with collector.lock:  # clinical readings that arrived while the backlog still drained
        urgent = sorted(d for at, d in collector.clinical if at < collector.last_backlog_arrival)
        due = {
            seq: collector.clinical_sent[seq]
            for seq, at in collector.clinical_at.items()
            if at < collector.last_backlog_arrival
        }
    stored, stored_missing = after(due, collector.stored, collector.lock, 60 if store else 0)
    opened: list[float] = []
    opened_missing = from_edge = 0
    edge: list[float] = []
    behind = caught_s = float("nan")
    if alerts is not None:
        evaluated, changed = alerts.caught_up()
        behind, caught_s = evaluated - evaluated_at_end, max(changed - drained_at, 0.0)
        opened, opened_missing = after(due, alerts.opened, alerts.lock, 120)
        from_edge = alerts.from_edge()
        with collector.lock:
            raised = {seq: collector.edge_at.get(alerts.ref(seq)) for seq in due}
        edge = sorted(at - due[seq] for seq, at in raised.items() if at is not None)
    return {
        "from_edge": from_edge,
        "behind": behind,
        "caught_s": caught_s,
        "edge_n": len(edge),
        "edge_p50": pct(edge, 0.5),
        "edge_p99": pct(edge, 0.99),
        "stored_n": len(stored),
        "stored_missing": stored_missing,
        "stored_p50": pct(stored, 0.5),
        "stored_p99": pct(stored, 0.99),
        "stored_max": stored[-1] if stored else float("nan"),
        "opened_n": len(opened),
        "opened_missing": opened_missing,
        "opened_p50": pct(opened, 0.5),
        "opened_p99": pct(opened, 0.99),
        "opened_max": opened[-1] if opened else float("nan"),
        "clinical_n": len(urgent),
        "clinical_p50": statistics.median(urgent) if urgent else float("nan"),
        "clinical_p99": urgent[int(0.99 * (len(urgent) - 1))] if urgent else float("nan"),
        "clinical_max": urgent[-1] if urgent else float("nan"),
        "prefill_s": t_fill,
        "elapsed_s": elapsed,
        "rate": n / elapsed,
        "missing": n - backlog_seen,
        "live_missing": live.sent - sum(1 for dev, _ in collector.seen if dev == "live"),
        "duplicates": collector.records - collector.distinct(),
        "live_p50": statistics.median(delays) if delays else float("nan"),
        "live_p95": delays[int(0.95 * (len(delays) - 1))] if delays else float("nan"),
        "live_max": delays[-1] if delays else float("nan"),
        "wire_per_reading": collector.wire_bytes / max(1, collector.records),
        "receipt_per_reading": collector.receipt_bytes / max(1, collector.records),
        "receipts": collector.receipts,
        "records": collector.records,
        "batches": collector.batches,
        "plain_per_reading": collector.plain_bytes / max(1, collector.records),
    }


def after(
    due: dict[int, float], done: dict[int, float], lock: threading.Lock, timeout: float
) -> tuple[list[float], int]:
    """Delays from ``due`` (seq -> sent) to ``done`` (seq -> monotonic), sorted, and how many
    of ``due`` were not done after waiting up to ``timeout`` s for the last ones."""
    deadline = time.monotonic() + timeout
    while True:
        with lock:
            got = {seq: done[seq] - sent for seq, sent in due.items() if seq in done}
        if len(got) == len(due) or time.monotonic() > deadline:
            return sorted(got.values()), len(due) - len(got)
        time.sleep(0.1)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[int(q * (len(ordered) - 1))] if ordered else float("nan")


def capped(
    local: MosquittoService,
    central: MosquittoService,
    collector: Collector,
    data: Path,
    args: argparse.Namespace,
) -> dict[str, float]:
    """Drain under the byte cap for ``args.cap_s`` seconds, live and clinical readings on."""
    collector.reset()
    prefill(data / f"{CENTRE}.sqlite3", args.cap_backlog)
    env = {"GRAMLINK_GATEWAY_UPLINK_MAX_BYTES_PER_S": str(args.cap)}
    gateway = start_gateway(local, central, data, extra_env=env)
    until_subscribed(local, collector)
    live = LivePublisher(local, collector, args.cap_live_rate)
    oxi = LivePublisher(local, collector, max(args.clinical_rate, 1.0), clinical=True)
    live.start()
    oxi.start()
    try:
        wait(lambda: collector.batches >= 2, 60, "the drain started")
        start = time.monotonic()
        while (left := start + args.cap_s - time.monotonic()) > 0:
            time.sleep(min(1.0, left))
            print(f"  capped drain: {collector.distinct():>9,} readings", end="\r", flush=True)
        end = time.monotonic()
        print()
    finally:
        live.close()
        oxi.close()
        gateway.send_signal(signal.SIGTERM)
        gateway.wait(30)
    with collector.lock:
        bulk = sum(b for at, b, only in collector.envelopes if start <= at < end and not only)
        exempt = sum(b for at, b, only in collector.envelopes if start <= at < end and only)
        live_delays = list(collector.live_delays)
        oxi_delays = [d for _, d in collector.clinical]
    return {
        "rate": bulk / (end - start),
        "exempt_rate": exempt / (end - start),
        "seconds": end - start,
        "live_p50": pct(live_delays, 0.5),
        "live_p99": pct(live_delays, 0.99),
        "oxi_p50": pct(oxi_delays, 0.5),
        "oxi_p99": pct(oxi_delays, 0.99),
        "oxi_n": len(oxi_delays),
    }


def live_stage(
    local: MosquittoService,
    central: MosquittoService,
    collector: Collector,
    home: Path,
    n: int,
    results: list[tuple[str, str]],
) -> None:
    print(f"[1/4] live throughput: {n:,} readings from 20 devices", flush=True)
    gateway = start_gateway(local, central, home / "gw-live")
    time.sleep(2)  # let the gateway subscribe (bench only; tests wait on probes)
    rate, elapsed = live_throughput(local, collector, n)
    gateway.send_signal(signal.SIGTERM)
    gateway.wait(30)
    results.append(("live throughput (device -> central)", f"{rate:,.0f} readings/s"))
    with collector.lock:
        live_receipts = collector.receipt_bytes / max(1, collector.records)
        live_batches = collector.batches
    results.append(
        (
            "live: downlink bytes/reading for storage receipts",
            f"{live_receipts:.3f} B ({live_batches:,} batches)",
        )
    )
    print(f"  {rate:,.0f} readings/s ({elapsed:.1f} s)")


def registered() -> list[tuple[str, str]]:
    """The benchmark centre's devices as the registry knows them (id, kind)."""
    routers = [f"dev-{i}" for i in range(100)] + ["live", "probe"]
    return [(d, "router") for d in routers] + [
        ("oxi", "pulse_oximeter"),
        ("oxi-warm", "pulse_oximeter"),
        (GW, "gateway"),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backlog", type=int, default=1_000_000, help="readings in the backlog")
    parser.add_argument("--live", type=int, default=30_000, help="readings for live throughput")
    parser.add_argument("--live-rate", type=float, default=100.0, help="live readings/s in drain")
    parser.add_argument("--kill-backlog", type=int, default=200_000, help="0: skip SIGKILL run")
    parser.add_argument("--clinical-rate", type=float, default=5.0, help="clinical readings/s")
    parser.add_argument("--cap", type=int, default=50_000, help="byte cap, B/s (0: skip)")
    parser.add_argument("--cap-backlog", type=int, default=300_000, help="backlog under the cap")
    parser.add_argument("--cap-s", type=float, default=60.0, help="seconds measured under it")
    parser.add_argument("--cap-live-rate", type=float, default=10.0, help="live readings/s")
    parser.add_argument("--skip-live", action="store_true", help="skip the throughput stage")
    parser.add_argument(
        "--store",
        action="store_true",
        help="drain into InfluxDB through an ingest worker (its receipts time the clinical"
        " readings' storage) instead of the collector's receipts",
    )
    parser.add_argument(
        "--alerts",
        action="store_true",
        help="run the central alert engine (gramlink alerts, default pack) during the drain"
        " and time each clinical reading's alert opening in its registry",
    )
    parser.add_argument(
        "--alerts-pause",
        type=float,
        default=0.0,
        help="with --alerts: stop the engine (SIGSTOP) for the drain's first seconds, so its"
        " bulk session holds a backlog (as behind a drain faster than it); clinical readings"
        " start when it continues (at most 30: its keepalive)",
    )
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the brokers on the way out

    home = Path(tempfile.mkdtemp(prefix="gl-bench-gw-"))
    local = MosquittoService(home / "local", free_port(), secrets.token_urlsafe(16))
    central = MosquittoService(home / "central", free_port(), secrets.token_urlsafe(16))
    local.start()
    central.start()
    collector = Collector(central)
    results: list[tuple[str, str]] = []
    stop_later: list[Callable[[], object]] = []
    try:
        if not args.skip_live:
            live_stage(local, central, collector, home, args.live, results)

        print(
            f"[2/4] drain of a {args.backlog:,}-reading backlog, live at {args.live_rate}/s,"
            f" clinical at {args.clinical_rate}/s"
        )
        worker = None
        influx: InfluxService | None = None
        if args.store:
            influx = InfluxService(home / "influx", free_port(), secrets.token_urlsafe(16))
            influx.start()
            stop_later.append(influx.stop)
            worker = WorkerProcess(central, influx, home / "ingest.log", "bench-ingest")
            stop_later.append(worker.proc.terminate)
            collector.receipting = False
        if args.alerts:
            alerts = CentralAlerts(
                home / "alerts",
                central,
                CENTRE,
                KEY.encode(),
                registered(),
                influx,
            )
            stop_later.append(alerts.close)
            print("  central alert engine: warming up", flush=True)
            alerts.warm_up()
            collector.alerts = alerts
        d = drain(
            local,
            central,
            collector,
            home / "gw-drain",
            args.backlog,
            args.live_rate,
            None,
            args.clinical_rate,
            args.store,
            args.alerts_pause,
        )
        results += [
            ("backlog prefill (direct to SQLite)", f"{d['prefill_s']:.1f} s"),
            ("drain rate", f"{d['rate']:,.0f} readings/s ({d['elapsed_s']:.1f} s)"),
            ("drain: backlog readings missing", f"{d['missing']:.0f}"),
            ("drain: duplicates on the wire", f"{d['duplicates']:.0f}"),
            (
                "live delay during drain p50/p95/max",
                f"{d['live_p50']:.2f} / {d['live_p95']:.2f} / {d['live_max']:.2f} s",
            ),
            (
                "clinical reading -> central broker during the drain p50/p99/max",
                f"{d['clinical_p50']:.3f} / {d['clinical_p99']:.3f} / {d['clinical_max']:.3f} s"
                f" (n={d['clinical_n']:.0f})",
            ),
            (
                "clinical reading -> stored in InfluxDB (ingest's receipt) p50/p99/max",
                f"{d['stored_p50']:.3f} / {d['stored_p99']:.3f} / {d['stored_max']:.3f} s"
                f" (n={d['stored_n']:.0f}, not stored {d['stored_missing']:.0f})"
                if args.store
                else "(not measured: --store)",
            ),
            (
                "clinical reading -> its central alert opened (registry row) p50/p99/max",
                f"{d['opened_p50']:.3f} / {d['opened_p99']:.3f} / {d['opened_max']:.3f} s"
                f" (n={d['opened_n']:.0f}, not opened {d['opened_missing']:.0f};"
                f" {d['from_edge']:.0f} clinical alerts opened or stamped from the gateway's)"
                if args.alerts
                else "(not measured: --alerts)",
            ),
            (
                "clinical reading -> the gateway's own alert at the central broker p50/p99",
                f"{d['edge_p50']:.3f} / {d['edge_p99']:.3f} s (n={d['edge_n']:.0f})"
                if args.alerts
                else "(not measured: --alerts)",
            ),
            (
                "the engine at the end of the drain: readings not yet evaluated; caught up after",
                f"{d['behind']:,.0f}; {d['caught_s']:.1f} s" if args.alerts else "-",
            ),
            ("uplink bytes/reading (batched, MQTT framing)", f"{d['wire_per_reading']:.1f} B"),
            ("one JSON message per reading (MQTT framing)", f"{d['plain_per_reading']:.1f} B"),
            ("ratio", f"1/{d['plain_per_reading'] / d['wire_per_reading']:.1f}"),
            (
                "downlink bytes/reading for storage receipts (MQTT framing)"
                + (" [--store: ingest's receipts, not counted]" if args.store else ""),
                f"{d['receipt_per_reading']:.3f} B ({d['receipts']:,} receipts"
                f" for {d['batches']:,} batches)",
            ),
            (
                "downlink bytes/reading, receipts + batch PUBACKs",
                f"{d['receipt_per_reading'] + PUBACK * d['batches'] / max(1, d['records']):.3f} B",
            ),
        ]
        collector.alerts = None
        if worker is not None:
            worker.proc.terminate()
            worker.proc.wait(30)
            collector.receipting = True
        if args.cap:
            print(f"[3/4] byte cap {args.cap:,} B/s over {args.cap_s:.0f} s")
            c = capped(local, central, collector, home / "gw-cap", args)
            results += [
                (
                    f"capped drain: envelope bytes/s (cap {args.cap:,} B/s)",
                    f"{c['rate']:,.0f} B/s ({100 * (c['rate'] / args.cap - 1):+.2f} %,"
                    f" over {c['seconds']:.0f} s)",
                ),
                ("capped: clinical-only envelopes (exempt)", f"{c['exempt_rate']:,.0f} B/s"),
                (
                    f"capped: live bulk delay p50/p99 ({args.cap_live_rate}/s)",
                    f"{c['live_p50']:.2f} / {c['live_p99']:.2f} s",
                ),
                (
                    "capped: clinical delay p50/p99",
                    f"{c['oxi_p50']:.3f} / {c['oxi_p99']:.3f} s (n={c['oxi_n']:.0f})",
                ),
            ]
        if args.kill_backlog:
            print(f"[4/4] SIGKILL halfway through draining {args.kill_backlog:,} readings")
            k = drain(
                local, central, collector, home / "gw-kill", args.kill_backlog, args.live_rate, 0.5
            )
            results += [
                ("SIGKILL run: backlog missing", f"{k['missing']:.0f} of {args.kill_backlog:,}"),
                ("SIGKILL run: live missing", f"{k['live_missing']:.0f}"),
                ("SIGKILL run: duplicates on the wire", f"{k['duplicates']:.0f}"),
            ]
    finally:
        collector._stop.set()
        collector.client.disconnect()
        collector.client.loop_stop()
        local.stop()
        central.stop()
        for stop in reversed(stop_later):
            stop()
    print(
        f"\nmachine: {os.cpu_count()} cores, {platform.processor() or platform.machine()};"
        f" {time.strftime('%Y-%m-%d %H:%M %Z')}; load average"
        f" {' '.join(f'{v:.2f}' for v in os.getloadavg())}"
    )
    print("\n| measure | result |\n|---|---|")
    for name, value in results:
        print(f"| {name} | {value} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
