"""Ingest benchmark: ``.venv/bin/python -m bench.ingest``.

All in one run, on its own Mosquitto and InfluxDB (temporary directory):
(a) the broker's ceiling: one C subscriber (mosquitto_sub -q 1 -C N) draining
    the same pre-loaded stream of single QoS 1 readings, counting;
(b) InfluxDB's ceiling: pre-built line protocol in 5,000-line batches straight
    to /write, two connections (as ingest uses by default);
(c) GramLink ingest end to end (``python -m gramlink ingest`` as a process),
    counted in InfluxDB at the end; once with gateway batch envelopes (500
    readings each), once with one reading per QoS 1 message;
(d) (a) and (c) again over TLS (``mqtts://``, a CA and a broker certificate
    made by openssl for the run): the cost of TLS.

The publisher must not be the bottleneck, and on 2 cores it would compete with
the consumer for CPU: so every consumer first makes its persistent session, is
stopped, the pre-built messages are published into its session queue at the
broker, and the consumer is started and timed from its first message to the
last reading stored. (mosquitto_pub -l at QoS 1 was tried first: Mosquitto
2.0.11's client exits at end of input with messages still in flight and lost
most of them, so it is not used.)
Reports readings/s, CPU time per reading (µs, from /proc: user + system of the
consumer process, mosquitto_sub / influxd / the ingest worker) and peak RSS,
write latency p50/p99, (c) as a ratio of the broker's own QoS 1 ceiling (a) over
the same transport (target: >= 90 % with one reading per message) and of
InfluxDB's (b). Zero lost is checked, not assumed.

``--runs`` picks a subset (for profiling one run with py-spy); ``envelopes2``,
``single2`` and ``single2-tls`` run (c) with two worker processes sharing the load
(sums of their CPU and peak RSS; latencies of the first); the last two are in the
default.
"""

from __future__ import annotations

import argparse
import os
import platform
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt

from contract.codec import encode_batch_parts
from gramlink.services import InfluxService, MosquittoService
from gramlink.services.mosquitto import TlsListener
from gramlink.services.process import free_port

TICKS = os.sysconf("SC_CLK_TCK")
TARGET = 0.9  # issue #10: one reading per message at 90 % of the broker's ceiling


@dataclass(frozen=True)
class Tls:
    """The run's PKI: a CA and the broker's certificate for localhost / 127.0.0.1."""

    ca: Path
    cert: Path
    key: Path

    @classmethod
    def make(cls, directory: Path) -> Tls:
        directory.mkdir(parents=True, exist_ok=True)
        ca, ca_key = directory / "ca.pem", directory / "ca.key"
        cert, key = directory / "broker.pem", directory / "broker.key"
        csr, san = directory / "broker.csr", directory / "san.cnf"
        san.write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
        for args in (
            ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
             "-subj", "/CN=bench-ca", "-keyout", str(ca_key), "-out", str(ca)],
            ["req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
             "-keyout", str(key), "-out", str(csr)],
            ["x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
             "-CAcreateserial", "-days", "2", "-extfile", str(san), "-out", str(cert)],
        ):  # fmt: skip
            subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)
        return cls(ca, cert, key)


@dataclass
class Result:
    name: str
    readings: int
    seconds: float
    cpu_s: float
    rss_mb: float
    p50_ms: float | None = None
    p99_ms: float | None = None
    lost: int | None = None
    tls: bool = False
    broker_cpu_s: float | None = None  # Mosquitto's CPU time over the same window
    influx_cpu_s: float | None = None  # influxd's
    writer_wait_s: float | None = None  # the decode thread(s) waiting for a free writer

    @property
    def cores(self) -> float:
        """CPU cores busy on average over the run: the consumer, Mosquitto, influxd."""
        return (self.cpu_s + (self.broker_cpu_s or 0) + (self.influx_cpu_s or 0)) / self.seconds

    def per_reading_us(self, cpu_s: float | None) -> float | None:
        return None if cpu_s is None else cpu_s / self.readings * 1e6

    @property
    def wait_share(self) -> float | None:
        """Share of the run the decode thread (summed over workers) waited for a writer."""
        return None if self.writer_wait_s is None else self.writer_wait_s / self.seconds

    @property
    def rate(self) -> float:
        return self.readings / self.seconds

    @property
    def others_us(self) -> float:
        """Mosquitto's and influxd's CPU per reading over the same window, µs."""
        return ((self.broker_cpu_s or 0) + (self.influx_cpu_s or 0)) / self.readings * 1e6

    @property
    def cpu_us(self) -> float:
        """CPU time of the consumer per reading, µs."""
        return self.cpu_s / self.readings * 1e6


def cores_give_us(ceiling_rate: float) -> float:
    """The CPU this machine's cores give each reading at ``TARGET`` of the broker's
    ceiling, µs."""
    return (os.cpu_count() or 1) / (TARGET * ceiling_rate) * 1e6


def ingest_budget_us(ceiling_rate: float, run: Result) -> float:
    """The CPU per reading left for ingest at ``TARGET`` of the broker's ceiling: what
    the cores give, less what Mosquitto and influxd used per reading in ``run`` (µs;
    below ingest's own use, the target is out of reach on this machine whatever ingest
    does, and below zero for any consumer at all)."""
    return cores_give_us(ceiling_rate) - run.others_us


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def reading_json(seq: int, ts: int) -> bytes:
    return (
        b'{"v":1,"kind":"power","ts":%d,"seq":%d,"metrics":{"pv_power_w":%d.5,'
        b'"battery_soc_pct":%d.0,"battery_voltage_v":12.7,"grid_present":true}}'
        % (ts, seq, seq % 900, seq % 100)
    )


def single_messages(centre: str, n: int, ts0: int, devices: int = 10) -> list[tuple[str, bytes]]:
    return [
        (
            f"gl/v1/{centre}/pw-{i % devices}/telemetry",
            reading_json(i // devices, ts0 + i // devices),
        )
        for i in range(n)
    ]


def preload(broker: MosquittoService, messages: list[tuple[str, bytes]]) -> None:
    """Publish at QoS 1 and wait for every PUBACK (not timed)."""
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=f"bench-pub-{uuid.uuid4().hex[:8]}",
        protocol=mqtt.MQTTv5,
    )
    client.username_pw_set(broker.admin_user, broker.admin_password)
    client.max_inflight_messages_set(1000)
    client.connect(broker.bind, broker.port)
    client.loop_start()
    for start in range(0, len(messages), 20_000):  # packet ids wrap at 65,535
        infos = [client.publish(t, p, qos=1) for t, p in messages[start : start + 20_000]]
        for info in infos:
            info.wait_for_publish(300)
    client.disconnect()
    client.loop_stop()


def forget_sessions(broker: MosquittoService, client_ids: list[str]) -> None:
    """End the persistent sessions of a run's clients: a clean start with no expiry.

    A worker's session outlives it, still subscribed; left there, every later preload
    is also queued for it (the broker's memory and its saved database grow run after
    run, and saving that database every second slowed the later runs of one process).
    """
    for client_id in client_ids:
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5
        )
        client.username_pw_set(broker.admin_user, broker.admin_password)
        client.connect(broker.bind, broker.port, clean_start=True)  # expiry 0: gone at the end
        client.loop_start()
        deadline = time.monotonic() + 10
        while not client.is_connected():
            if time.monotonic() > deadline:
                raise RuntimeError(f"could not connect as {client_id} to end its session")
            time.sleep(0.01)
        client.disconnect()
        client.loop_stop()


def broker_ceiling(broker: MosquittoService, n: int, tls: Tls | None = None) -> Result:
    centre = f"bench-a-{uuid.uuid4().hex[:6]}"
    sub_id = f"bench-sub-{uuid.uuid4().hex[:6]}"
    where = ["-h", broker.bind, "-p", str(broker.port)]
    if tls is not None and broker.tls is not None:
        where = ["-h", "localhost", "-p", str(broker.tls.port), "--cafile", str(tls.ca)]
    base = [
        "mosquitto_sub", *where,
        "-u", broker.admin_user, "-P", broker.admin_password,
        "-q", "1", "-c", "-i", sub_id, "-x", "600", "-t", f"gl/v1/{centre}/+/telemetry",
    ]  # fmt: skip
    subprocess.run(  # makes the session; "Timed out" after 1 s is the expected end
        [*base, "-W", "1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False
    )
    preload(broker, single_messages(centre, n, int(time.time() * 1000) - 3_600_000))
    broker_pid = broker.process.pid
    assert broker_pid is not None
    start = time.perf_counter()
    broker_cpu0 = cpu_seconds(broker_pid)
    with open(os.devnull, "wb") as devnull:
        sub = subprocess.Popen([*base, "-C", str(n)], stdout=devnull)
    _, status, usage = os.wait4(sub.pid, 0)
    elapsed = time.perf_counter() - start
    broker_cpu = cpu_seconds(broker_pid) - broker_cpu0
    sub.returncode = os.waitstatus_to_exitcode(status)
    if sub.returncode != 0:
        raise RuntimeError(f"mosquitto_sub exited with {sub.returncode}")
    forget_sessions(broker, [sub_id])
    return Result(
        "(a) broker: queued single QoS 1 readings to mosquitto_sub" + (", TLS" if tls else ""),
        n,
        elapsed,
        usage.ru_utime + usage.ru_stime,
        0.0,  # ru_maxrss of a child forked from this big process is not its own: not shown
        tls=tls is not None,
        broker_cpu_s=broker_cpu,
    )


def influx_ceiling(influx: InfluxService, n: int, batch: int = 5000) -> Result:
    now_ns = time.time_ns() - 3_600 * 10**9
    bodies = []
    for b in range(n // batch):
        lines = [
            f"power,centre=bench-b,device=pw-{i % 100},model=m pv_power_w={i % 900}.5,"
            f"battery_soc_pct={i % 100}.0,battery_voltage_v=12.7,grid_present=true,seq={i}i "
            f"{now_ns + i * 1000}"
            for i in range(b * batch, (b + 1) * batch)
        ]
        bodies.append("\n".join(lines).encode())
    pid = influx.process.pid
    assert pid is not None
    cpu0 = cpu_seconds(pid)
    latencies: list[float] = []
    params = {"db": influx.database, "precision": "ns"}
    auth = (influx.admin_user, influx.admin_password)

    def post_all(part: list[bytes]) -> None:
        with httpx.Client(base_url=influx.url, params=params, auth=auth, timeout=60) as client:
            for body in part:
                t0 = time.perf_counter()
                client.post("/write", content=body).raise_for_status()
                latencies.append(time.perf_counter() - t0)

    start = time.perf_counter()
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(post_all, [bodies[0::2], bodies[1::2]]))
    elapsed = time.perf_counter() - start
    latencies.sort()
    return Result(
        "(b) InfluxDB: 5,000-line batches to /write, 2 connections",
        len(bodies) * batch,
        elapsed,
        cpu_seconds(pid) - cpu0,
        peak_rss_mb(pid),
        latencies[len(latencies) // 2] * 1000,
        latencies[int(len(latencies) * 0.99)] * 1000,
    )


class WorkerProcess:
    def __init__(
        self,
        broker: MosquittoService,
        influx: InfluxService,
        log: Path,
        client_id: str,
        share_group: str | None = None,
        tls: Tls | None = None,
        settings: dict[str, str] | None = None,
    ) -> None:
        self.port = free_port()
        env = dict(os.environ)
        if tls is not None and broker.tls is not None:
            env["GRAMLINK_INGEST_MQTT_URL"] = broker.tls_url
            env["GRAMLINK_INGEST_MQTT_CA_FILE"] = str(tls.ca)
        else:
            env["GRAMLINK_INGEST_MQTT_URL"] = f"mqtt://{broker.bind}:{broker.port}"
        env.update(
            {
                "GRAMLINK_INGEST_MQTT_USERNAME": broker.admin_user,
                "GRAMLINK_INGEST_MQTT_PASSWORD": broker.admin_password,
                "GRAMLINK_INGEST_INFLUX_URL": influx.url,
                "GRAMLINK_INGEST_INFLUX_DATABASE": influx.database,
                "GRAMLINK_INGEST_INFLUX_USERNAME": influx.admin_user,
                "GRAMLINK_INGEST_INFLUX_PASSWORD": influx.admin_password,
                "GRAMLINK_INGEST_CLIENT_ID": client_id,
                # a group of its own: an offline member of a shared subscription
                # still gets its share queued (Mosquitto), see docs/ingest.md
                "GRAMLINK_INGEST_SHARE_GROUP": share_group or client_id,
                "GRAMLINK_INGEST_METRICS_PORT": str(self.port),
                "GRAMLINK_INGEST_PIPELINE_INTERVAL_S": "0",
                "GRAMLINK_INGEST_LOG_LEVEL": "warning",
                **(settings or {}),
            }
        )
        self.log = log
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gramlink", "ingest"],
            env=env,
            stdout=log.open("ab"),
            stderr=subprocess.STDOUT,
        )
        self.started = 0.0
        self.cpu0 = 0.0

    def wait_subscribed(self) -> WorkerProcess:
        wait_subscribed([self])
        return self

    def subscribed(self) -> bool:
        """True once it subscribed: it consumes from then on, so what a run counts
        (its time, its CPU) starts here, not at its start-up."""
        if self.started:
            return True
        if self.proc.poll() is not None:
            raise RuntimeError(f"ingest worker exited; see {self.log}")
        # from when the scrape was asked, not answered: a busy worker answers 30-90 ms
        # late, and a start taken at the answer leaves that much of the run uncounted
        asked, cpu = time.perf_counter(), cpu_seconds(self.proc.pid)
        if (self.metrics() or {}).get("gramlink_ingest_subscribed") != 1.0:
            return False
        self.started, self.cpu0 = asked, cpu
        return True

    def metrics(self) -> dict[str, float] | None:
        try:
            text = httpx.get(f"http://127.0.0.1:{self.port}/metrics", timeout=2).text
        except httpx.HTTPError:
            return None
        out = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                out[name] = float(value)
        return out

    def latency_ms(self, q: float) -> float | None:
        m = self.metrics() or {}
        buckets = sorted(
            (float(k.split('le="')[1].rstrip('"}')), v)
            for k, v in m.items()
            if k.startswith("gramlink_ingest_write_seconds_bucket") and "+Inf" not in k
        )
        total = m.get("gramlink_ingest_write_seconds_count", 0)
        for bound, cumulative in buckets:
            if total and cumulative >= q * total:
                return bound * 1000
        return None

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


def pause_between_scrapes(written: float, n: int) -> None:
    """A scrape costs the worker CPU (its whole registry as text) and this process
    competes for the two cores: seldom while far from the end, often near it."""
    time.sleep(0.01 if written >= 0.9 * n else 0.25)


def wait_subscribed(pool: list[WorkerProcess]) -> None:
    """Until every worker subscribed, watching all of them at once."""
    deadline = time.monotonic() + 30
    while not all([w.subscribed() for w in pool]):
        if time.monotonic() > deadline:
            raise RuntimeError(f"ingest worker did not start; see {pool[0].log}")
        time.sleep(0.01)


def count(influx: InfluxService, centre: str) -> int:
    body = influx.query(
        f"SELECT count(seq) FROM power WHERE centre='{centre}'", database=influx.database
    )
    series = body["results"][0].get("series")
    return int(series[0]["values"][0][1]) if series else 0


def ingest_run(
    broker: MosquittoService,
    influx: InfluxService,
    tmp: Path,
    n: int,
    envelopes: bool,
    workers: int = 1,
    tls: Tls | None = None,
) -> Result:
    centre = f"bench-c-{uuid.uuid4().hex[:6]}"
    ts0 = int(time.time() * 1000) - 3_600_000
    per_env = 500
    if envelopes:
        records = [
            ("telemetry", f"pw-{i % 100}", reading_json(i // 100, ts0 + i // 100), ts0)
            for i in range(n)
        ]
        messages = [
            (
                f"gl/v1/{centre}/gw-1/_gateway/batch",
                encode_batch_parts("gw-1", k, records[k : k + per_env]),
            )
            for k in range(0, n, per_env)
        ]
    else:
        messages = single_messages(centre, n, ts0)
    group = f"bench-{uuid.uuid4().hex[:6]}"
    ids = [f"{group}-{k}" for k in range(workers)]
    log = tmp / "worker.log"
    for client_id in ids:  # makes the sessions (with several, the broker splits the preload)
        WorkerProcess(broker, influx, log, client_id, group, tls).wait_subscribed().stop()
    preload(broker, messages)
    # Timed from the moment the first worker has subscribed (it drains its session
    # from then on); each worker's CPU from its own subscription, so neither
    # start-up nor a worker's early share escapes the count.
    broker_pid, influx_pid = broker.process.pid, influx.process.pid
    assert broker_pid is not None and influx_pid is not None
    broker_cpu0, influx_cpu0 = cpu_seconds(broker_pid), cpu_seconds(influx_pid)
    # all spawned before waiting for any: they start together, not one after the other
    pool = [WorkerProcess(broker, influx, log, client_id, group, tls) for client_id in ids]
    wait_subscribed(pool)
    start = min(w.started for w in pool)
    deadline = time.monotonic() + 600

    def total(name: str) -> float:
        return sum((w.metrics() or {}).get(name, 0) for w in pool)

    last_report = time.monotonic()
    while True:
        written = total("gramlink_ingest_points_written_total")
        if written >= n or time.monotonic() > deadline:
            break
        if time.monotonic() - last_report > 5:
            print(f"    ... {int(written):,} / {n:,} written", flush=True)
            last_report = time.monotonic()
        pause_between_scrapes(written, n)
    elapsed = time.perf_counter() - start
    cpu = sum(cpu_seconds(w.proc.pid) - w.cpu0 for w in pool)
    broker_cpu = cpu_seconds(broker_pid) - broker_cpu0
    influx_cpu = cpu_seconds(influx_pid) - influx_cpu0
    rss = sum(peak_rss_mb(w.proc.pid) for w in pool)
    p50, p99 = pool[0].latency_ms(0.5), pool[0].latency_ms(0.99)
    writer_wait = total("gramlink_ingest_writer_wait_seconds_total")
    for w in pool:
        w.stop()
    forget_sessions(broker, ids)
    stored = count(influx, centre)
    name = (
        "(c) ingest: gateway envelopes (500 readings)"
        if envelopes
        else "(c) ingest: one reading per QoS 1 message"
    )
    if workers > 1:
        name += f", {workers} worker processes"
    if tls is not None:
        name += ", TLS"
    return Result(
        name,
        n,
        elapsed,
        cpu,
        rss,
        p50,
        p99,
        lost=n - stored,
        tls=tls is not None,
        broker_cpu_s=broker_cpu,
        influx_cpu_s=influx_cpu,
        writer_wait_s=writer_wait,
    )


def services() -> tuple[Path, Tls, MosquittoService, InfluxService]:
    """A directory, the TLS files, and a Mosquitto (with a TLS listener) and an InfluxDB
    of the benchmark's own (not started)."""
    tmp = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    tls = Tls.make(tmp / "pki")
    broker = MosquittoService(
        tmp / "mosquitto",
        free_port(),
        secrets.token_urlsafe(16),
        tls=TlsListener(free_port(), tls.cert, tls.key),
    )
    influx = InfluxService(tmp / "influxdb", free_port(), secrets.token_urlsafe(16))
    return tmp, tls, broker, influx


def machine() -> str:
    return (
        f"machine: {os.cpu_count()} cores, {platform.processor() or platform.machine()}; "
        f"{time.strftime('%Y-%m-%d %H:%M %Z')}; load average {os.getloadavg()[0]:.2f}"
    )


def paired(args: argparse.Namespace, with_tls: bool) -> int:
    """``--pairs``: the broker's ceiling and ingest with one reading per message, in turn."""
    tmp, tls, broker, influx = services()
    ratios: dict[bool, list[float]] = {False: [], True: []}
    rows = []
    lost = 0
    try:
        broker.start()
        influx.start()
        for i in range(args.pairs):
            for secure in (None, tls) if with_tls else (None,):
                print(f"pair {i + 1}/{args.pairs}{', TLS' if secure else ''} ...", flush=True)
                a = broker_ceiling(broker, args.broker_messages, secure)
                c = ingest_run(broker, influx, tmp, args.single_readings, False, tls=secure)
                ratios[secure is not None].append(c.rate / a.rate)
                lost += c.lost or 0
                rows.append((i + 1, secure is not None, a, c))
    finally:
        influx.stop()
        broker.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print()
    print(machine())
    print(
        "| pair | TLS | (a) messages/s | (c) readings/s | (c) / (a) | ingest µs "
        "| Mosquitto + influxd µs | left for ingest at 90 %, µs | lost |"
    )
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for i, secure, a, c in rows:
        print(
            f"| {i} | {'yes' if secure else 'no'} | {a.rate:,.0f} | {c.rate:,.0f} "
            f"| {c.rate / a.rate:.0%} | {c.cpu_us:.1f} | {c.others_us:.1f} "
            f"| {ingest_budget_us(a.rate, c):.1f} | {fmt(c.lost, 'd')} |"
        )
    for secure, values in ratios.items():
        if values:
            print(
                f"median (c) / (a){', TLS' if secure else ''}: {statistics.median(values):.0%} "
                f"(of {len(values)}: {min(values):.0%}-{max(values):.0%})"
            )
    return 1 if lost else 0


def budget(results: list[Result], broker_rate: dict[bool, float]) -> None:
    """For each run of one reading per message: the CPU per reading this machine leaves
    ingest at 90 % of the broker's ceiling over the same transport."""
    rows = [
        (r, broker_rate[r.tls])
        for r in results
        if r.name.startswith("(c)") and "one reading" in r.name and r.tls in broker_rate
    ]
    if not rows:
        return
    print()
    print(
        f"At {TARGET:.0%} of (a), {os.cpu_count()} cores give each reading "
        f"cores / ({TARGET:.0%} x (a)) of CPU; less what Mosquitto and influxd used per "
        "reading in the run, that is what is left for ingest, µs:"
    )
    print(
        "| run | 90 % of (a), readings/s | cores give | Mosquitto + influxd | left | ingest used |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for r, ceiling in rows:
        print(
            f"| {r.name} | {TARGET * ceiling:,.0f} | {cores_give_us(ceiling):.1f} "
            f"| {r.others_us:.1f} "
            f"| {ingest_budget_us(ceiling, r):.1f} | {r.cpu_us:.1f} |"
        )


def fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--broker-messages", type=int, default=200_000)
    parser.add_argument("--influx-points", type=int, default=500_000)
    parser.add_argument("--envelope-readings", type=int, default=300_000)
    parser.add_argument("--single-readings", type=int, default=150_000)
    parser.add_argument(
        "--runs",
        default="a,b,envelopes,single,a-tls,envelopes-tls,single-tls,single2,single2-tls",
        help="comma-separated subset of a,b,envelopes,single,a-tls,envelopes-tls,single-tls,"
        "envelopes2,single2,single2-tls (the last three: two worker processes sharing the "
        "load through the shared subscription, as a deployment scales out)",
    )
    parser.add_argument(
        "--pairs",
        type=int,
        default=0,
        help="instead of the runs: this many (a) + (c) one-per-message pairs, in turn "
        "(plain, and TLS too if single-tls is among --runs), each pair's ratio and their "
        "median: one run's ratio moves by a third on a shared machine",
    )
    args = parser.parse_args()
    runs = set(args.runs.split(","))
    if args.pairs:
        return paired(args, "single-tls" in runs)

    tmp, tls, broker, influx = services()
    results: list[Result] = []
    try:
        print(f"starting mosquitto and influxdb under {tmp} ...", flush=True)
        broker.start()
        influx.start()
        if "a" in runs:
            print(f"(a) broker ceiling, {args.broker_messages:,} messages ...", flush=True)
            results.append(broker_ceiling(broker, args.broker_messages))
        if "b" in runs:
            print(f"(b) InfluxDB ceiling, {args.influx_points:,} points ...", flush=True)
            results.append(influx_ceiling(influx, args.influx_points))
        if "envelopes" in runs:
            n = args.envelope_readings
            print(f"(c) ingest with envelopes, {n:,} readings ...", flush=True)
            results.append(ingest_run(broker, influx, tmp, n, True))
        if "single" in runs:
            n = args.single_readings
            print(f"(c) ingest, one per message, {n:,} readings ...", flush=True)
            results.append(ingest_run(broker, influx, tmp, n, False))
        if "a-tls" in runs:
            print(f"(a) broker ceiling over TLS, {args.broker_messages:,} messages ...", flush=True)
            results.append(broker_ceiling(broker, args.broker_messages, tls))
        for run, envelopes in (("envelopes-tls", True), ("single-tls", False)):
            if run in runs:
                n = args.envelope_readings if envelopes else args.single_readings
                print(f"(c) ingest over TLS, {run}, {n:,} readings ...", flush=True)
                results.append(ingest_run(broker, influx, tmp, n, envelopes, tls=tls))
        for run, envelopes, secure in (
            ("envelopes2", True, None),
            ("single2", False, None),
            ("single2-tls", False, tls),
        ):
            if run in runs:
                n = args.envelope_readings if envelopes else args.single_readings
                print(f"(c) ingest, two worker processes, {run}, {n:,} readings ...", flush=True)
                results.append(ingest_run(broker, influx, tmp, n, envelopes, tls=secure, workers=2))
    finally:
        influx.stop()
        broker.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    influx_rate = next((r.rate for r in results if r.name.startswith("(b)")), None)
    broker_rate = {r.tls: r.rate for r in results if r.name.startswith("(a)")}
    print()
    print(machine())
    header = (
        "| run | readings | readings/s | CPU µs / reading | peak RSS MB "
        "| write p50 ms | write p99 ms | ratio to (a) | ratio to (b) | lost |"
    )
    print(header)
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        is_c = r.name.startswith("(c)")
        ceiling = broker_rate.get(r.tls)
        to_a = f"{r.rate / ceiling:.0%}" if ceiling and is_c else "-"
        to_b = f"{r.rate / influx_rate:.0%}" if influx_rate and is_c else "-"
        print(
            f"| {r.name} | {r.readings:,} | {r.rate:,.0f} | {r.cpu_us:.1f} "
            f"| {fmt(r.rss_mb or None, '.0f')} | {fmt(r.p50_ms, '.0f')} | {fmt(r.p99_ms, '.0f')} "
            f"| {to_a} | {to_b} | {fmt(r.lost, 'd')} |"
        )
    split = [r for r in results if r.broker_cpu_s is not None]
    if split:
        print()
        print("CPU per reading of every process over the same window (from /proc), µs:")
        print(
            "| run | consumer | Mosquitto | influxd | sum | cores busy (of 2) "
            "| decode waited for a writer |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|")
        for r in split:
            total = r.cpu_s + (r.broker_cpu_s or 0) + (r.influx_cpu_s or 0)
            print(
                f"| {r.name} | {r.cpu_us:.1f} | {fmt(r.per_reading_us(r.broker_cpu_s), '.1f')} "
                f"| {fmt(r.per_reading_us(r.influx_cpu_s), '.1f')} "
                f"| {total / r.readings * 1e6:.1f} | {r.cores:.2f} "
                f"| {fmt(r.wait_share, '.0%')} |"
            )
    budget(results, broker_rate)
    lost = [r for r in results if r.lost]
    if lost:
        print("READINGS LOST in: " + ", ".join(r.name for r in lost))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
