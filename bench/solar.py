"""Cost of the clear-sky expectation (``alerting.solar``): import, day curves, calls.

``python -m bench.solar`` prints:

- the import time of ``alerting.solar`` (pvlib with pandas, scipy, h5py), in a fresh
  interpreter, minus that of an empty one, median of 3;
- the build time of one day's curve with pvlib (a new day at a known place, and a new place,
  which also looks its altitude up), median and p95;
- the time of one ``expected_energy_wh`` call: one array on one day (the common case), 1,000
  arrays at distinct places sharing one cache, and calls that alternate days (the LRU path);
- what the first readings and then each local midnight cost an engine whose 1,000 centres
  stand at distinct places (one curve each per day; in one time zone they all roll over at
  once);
- the memory one cached day curve takes.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable
from functools import partial

from alerting.solar import MS_PER_DAY, ClearSky, DayCurves

DAY0_MS = 1_781_980_200_000  # 21 June 2026, 00:00 at UTC+5:30
SAMBA = (32.56, 75.12, 5.5)


def import_seconds() -> float:
    def run(code: str) -> float:
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True)
        return time.perf_counter() - start

    with_pvlib = statistics.median(run("import alerting.solar") for _ in range(3))
    empty = statistics.median(run("pass") for _ in range(3))
    return with_pvlib - empty


def timed_ms(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return (time.perf_counter() - start) * 1000


def per_call_us(calls: int, action: Callable[[int], object]) -> float:
    start = time.perf_counter()
    for i in range(calls):
        action(i)
    return (time.perf_counter() - start) / calls * 1e6


def report(name: str, samples: list[float]) -> float:
    samples = sorted(samples)
    median = statistics.median(samples)
    p95 = samples[int(0.95 * (len(samples) - 1))]
    print(f"{name}: median {median:.1f} ms, p95 {p95:.1f} ms over {len(samples)}")
    return median


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=60, help="day curves built at one place")
    parser.add_argument("--places", type=int, default=60, help="new places built")
    parser.add_argument("--calls", type=int, default=300_000, help="calls timed per case")
    args = parser.parse_args()

    print(f"import alerting.solar (pvlib, pandas, scipy, h5py): {import_seconds():.2f} s")

    curves = DayCurves()
    samba = ClearSky(*SAMBA, 1000.0, curves=curves)
    samba.expected_energy_wh(DAY0_MS)  # the place's altitude, looked up once
    days = [
        timed_ms(partial(samba.expected_energy_wh, DAY0_MS + d * MS_PER_DAY))
        for d in range(1, args.days + 1)
    ]
    report("day curve, known place", days)
    new_places = (
        ClearSky(8.0 + p * 0.2, 70.0 + p * 0.2, 5.5, 1000.0, curves=curves)
        for p in range(args.places)
    )
    places = [timed_ms(partial(array.expected_energy_wh, DAY0_MS)) for array in new_places]
    report("day curve, new place", places)
    per_day = statistics.median(days)

    one_day = DAY0_MS + 6 * 3_600_000

    def daytime(i: int) -> int:  # 06:00 to 18:00 of one day, never past midnight
        return one_day + (i % 43_200) * 1000

    one = per_call_us(args.calls, lambda i: samba.expected_energy_wh(daytime(i)))
    print(f"call, one array, one day: {one:.2f} us")

    fleet_curves = DayCurves()
    fleet = [
        ClearSky(8.0 + (p % 40) * 0.5, 70.0 + (p // 40) * 0.5, 5.5, 1000.0, curves=fleet_curves)
        for p in range(1000)
    ]
    build_all = timed_ms(lambda: [array.expected_energy_wh(one_day) for array in fleet])
    shared = per_call_us(args.calls, lambda i: fleet[i % 1000].expected_energy_wh(daytime(i)))
    print(f"call, 1,000 arrays at distinct places, one cache: {shared:.2f} us")
    alternating = per_call_us(
        args.calls, lambda i: samba.expected_energy_wh(DAY0_MS + (i % 2) * MS_PER_DAY)
    )
    print(f"call, alternating days (LRU hit): {alternating:.2f} us")
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    for d in range(1, 201):
        fleet[0].expected_energy_wh(DAY0_MS + d * MS_PER_DAY)
    grown = sum(s.size_diff for s in tracemalloc.take_snapshot().compare_to(before, "filename"))
    tracemalloc.stop()
    print(f"memory: {grown / 200 / 1024:.1f} kB per cached curve with its key")
    print(
        f"1,000 centres at distinct places: first readings {build_all / 1000:.1f} s of pvlib, "
        f"then each local midnight about {per_day:.1f} s ({len(fleet_curves)} curves cached)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
