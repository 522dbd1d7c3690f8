"""Readings per second one process publishes, per connection mode.

Runs its own Mosquitto on a free loopback port, backfills a past period (no
waiting on the clock) and reports the sustained rate the broker acknowledged.
Usage: ``.venv/bin/python -m bench.sim [--readings N] [--profile]``.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import secrets
import tempfile
import time
from pathlib import Path

from firmware_sim.fleet import Fleet, FleetConfig
from gramlink.services import MosquittoService
from gramlink.services.process import free_port

START_MS = 1_705_293_000_000
CASES = (
    # name, mode, centres, devices per centre, telemetry qos
    ("per-device, 280 connections, QoS 1", "device", 40, 7, 1),
    ("per-centre, 20 connections, QoS 1", "centre", 20, 7, 1),
    ("per-centre, 20 connections, QoS 0", "centre", 20, 7, 0),
)


def run_case(
    broker: MosquittoService, mode: str, centres: int, per: int, qos: int, readings: int
) -> tuple[float, int, int]:
    fleet = Fleet(
        FleetConfig(
            port=broker.port,
            username=broker.admin_user,
            password=broker.admin_password,
            centres=centres,
            devices_per_centre=per,
            mode=mode,  # type: ignore[arg-type]
            centre_prefix=f"b{mode[0]}{qos}-",
            start_ms=START_MS,
            backfill_end_ms=START_MS + 365 * 86_400_000,
            interval_s=10,
            telemetry_qos=qos,  # type: ignore[arg-type]
        )
    )
    fleet.start(readings=readings)
    if not fleet.wait_connected(60):
        raise SystemExit("fleet did not connect")
    t0, r0 = time.monotonic(), fleet.counters.readings
    fleet.done.wait(600)
    elapsed = time.monotonic() - t0
    sent = fleet.counters.readings - r0
    fleet.stop()
    stats = fleet.stats()
    return sent / elapsed, stats.dropped, stats.errors


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--readings", type=int, default=100_000)
    parser.add_argument("--profile", action="store_true", help="cProfile the per-centre QoS 1 case")
    args = parser.parse_args()
    broker = MosquittoService(Path(tempfile.mkdtemp()), free_port(), secrets.token_urlsafe(12))
    broker.start()
    rows = []
    try:
        for name, mode, centres, per, qos in CASES:
            if args.profile and (mode, qos) != ("centre", 1):
                continue
            print(f"running: {name}, {args.readings} readings ...", flush=True)
            profiler = cProfile.Profile() if args.profile else None
            if profiler:
                profiler.enable()
            rate, dropped, errors = run_case(broker, mode, centres, per, qos, args.readings)
            if profiler:
                profiler.disable()
                pstats.Stats(profiler).sort_stats("tottime").print_stats(15)
            rows.append((name, rate, dropped, errors))
    finally:
        broker.stop()
    print(f"\n{'case':40} {'readings/s':>12} {'dropped':>8} {'errors':>7}")
    for name, rate, dropped, errors in rows:
        print(f"{name:40} {rate:12,.0f} {dropped:8} {errors:7}")


if __name__ == "__main__":
    main()
