"""Readings per second one process (and N worker processes) publish, per connection mode.

Runs its own Mosquitto on a free loopback port, backfills a past period (no
waiting on the clock) and reports the sustained rate from the first connect
until the broker acknowledged the last reading (the drain in ``stop`` is
included), with the broker's CPU share and the load average.
Usage: ``.venv/bin/python -m bench.sim [--readings N] [--only SUBSTRING] [--profile]``.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import secrets
import tempfile
import time
from pathlib import Path

from firmware_sim.fleet import Fleet, FleetConfig
from firmware_sim.workers import WorkerFleet
from gramlink.services import MosquittoService
from gramlink.services.process import free_port

START_MS = 1_705_293_000_000
CASES = (
    # name, mode, client, centres, devices per centre, telemetry qos, worker processes
    ("per-device (paho), 280 conns, QoS 1", "device", "paho", 40, 7, 1, 1),
    ("per-centre (paho), 20 conns, QoS 1", "centre", "paho", 20, 7, 1, 1),
    ("per-centre (raw), 20 conns, QoS 1", "centre", "raw", 20, 7, 1, 1),
    ("per-centre (raw), 20 conns, QoS 0", "centre", "raw", 20, 7, 0, 1),
    ("per-centre (raw), 20 conns, QoS 1, 2 procs", "centre", "raw", 20, 7, 1, 2),
)


def cpu_s(pid: int) -> float:
    """user+system CPU seconds of a process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_case(
    broker: MosquittoService,
    case: tuple[str, str, str, int, int, int, int],
    readings: int,
) -> tuple[float, int, int, float]:
    _name, mode, client, centres, per, qos, workers = case
    config = FleetConfig(
        port=broker.port,
        username=broker.admin_user,
        password=broker.admin_password,
        centres=centres,
        devices_per_centre=per,
        mode=mode,  # type: ignore[arg-type]
        client=client,  # type: ignore[arg-type]
        centre_prefix=f"b{mode[0]}{client[0]}{qos}{workers}-",
        start_ms=START_MS,
        backfill_end_ms=START_MS + 365 * 86_400_000,
        interval_s=10,
        telemetry_qos=qos,  # type: ignore[arg-type]
    )
    fleet: Fleet | WorkerFleet = (
        WorkerFleet(config, workers, drain_s=120) if workers > 1 else Fleet(config)
    )
    fleet.start(readings=readings)
    if not fleet.wait_connected(60):
        raise SystemExit("fleet did not connect")
    broker_pid = int((broker.home / "mosquitto.pid").read_text())
    t0, r0, b0 = time.monotonic(), fleet.stats().readings, cpu_s(broker_pid)
    fleet.done.wait(600)
    fleet.stop(drain_s=120)  # returns once the broker acknowledged everything
    elapsed = time.monotonic() - t0
    broker_cpu = (cpu_s(broker_pid) - b0) / elapsed
    stats = fleet.stats()
    if stats.completed < stats.messages:
        print(f"  warning: {stats.messages - stats.completed} publishes not acknowledged")
    return (stats.readings - r0) / elapsed, stats.dropped, stats.errors, broker_cpu


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--readings", type=int, default=150_000)
    parser.add_argument("--only", default="", help="run the cases whose name contains this")
    parser.add_argument("--profile", action="store_true", help="cProfile this process")
    args = parser.parse_args()
    broker = MosquittoService(Path(tempfile.mkdtemp()), free_port(), secrets.token_urlsafe(12))
    broker.start()
    rows = []
    print(f"load average before: {os.getloadavg()[0]:.2f} (2 cores)", flush=True)
    try:
        for case in CASES:
            if args.only not in case[0]:
                continue
            print(f"running: {case[0]}, {args.readings} readings ...", flush=True)
            profiler = cProfile.Profile() if args.profile else None
            if profiler:
                profiler.enable()
            rate, dropped, errors, broker_cpu = run_case(broker, case, args.readings)
            if profiler:
                profiler.disable()
                pstats.Stats(profiler).sort_stats("tottime").print_stats(15)
            rows.append((case[0], rate, dropped, errors, broker_cpu, os.getloadavg()[0]))
    finally:
        broker.stop()
    head = f"{'readings/s':>11} {'dropped':>8} {'errors':>7} {'broker CPU':>11} {'load':>5}"
    print(f"\n{'case':44} {head}")
    for name, rate, dropped, errors, broker_cpu, load in rows:
        print(f"{name:44} {rate:11,.0f} {dropped:8} {errors:7} {broker_cpu:10.0%} {load:5.2f}")


if __name__ == "__main__":
    main()
