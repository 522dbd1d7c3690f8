"""Reliability table: every fault scenario of ``tests/reliability`` in one run.

    .venv/bin/python -m bench.reliability [--only KEY ...] [--no-write]

Each scenario starts its own processes (centre broker, central broker,
gateway, ingest worker, InfluxDB, a simulated centre at a few hundred
readings/s), applies its fault mid-flow and counts every (device, seq)
published against what InfluxDB stored. The table (scenario, published,
stored, lost, duplicated, recovery time) is printed and written, with the
machine and the date, between the markers of docs/reliability.md. Exit code 1
when any scenario lost or duplicated a reading.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.reliability.scenarios import SCENARIOS, Scenario, receipts_landed, run
from tests.reliability.tally import Tally

DOC = Path(__file__).resolve().parents[1] / "docs" / "reliability.md"
BEGIN, END = "<!-- reliability-table:begin -->", "<!-- reliability-table:end -->"


def mosquitto_version() -> str:
    try:
        out = subprocess.run(["mosquitto", "-h"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "mosquitto ?"
    found = re.search(r"mosquitto version (\S+)", out.stdout + out.stderr)
    return f"Mosquitto {found.group(1)}" if found else "mosquitto ?"


def machine_line() -> str:
    return (
        f"{time.strftime('%Y-%m-%d %H:%M %Z')}; {os.cpu_count()} cores, "
        f"{platform.processor() or platform.machine()}, load average "
        f"{os.getloadavg()[0]:.2f}; {mosquitto_version()}; storage receipts "
        f"{'on' if receipts_landed() else 'not in this tree'}"
    )


def table(rows: list[Tally]) -> str:
    lines = [
        "| scenario | published | stored | lost | duplicated | recovery | notes |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for t in rows:
        recovery = f"{t.recovery_s:.1f} s" if t.recovery_s is not None else "never"
        note = t.note + (f"; {t.unexpected} stored unpublished" if t.unexpected else "")
        lines.append(
            f"| {t.scenario} | {t.published:,} | {t.stored:,} | {t.lost:,} | "
            f"{t.duplicated:,} | {recovery} | {note} |"
        )
    return "\n".join(lines)


def write(doc: Path, text: str) -> None:
    content = doc.read_text()
    start, end = content.index(BEGIN) + len(BEGIN), content.index(END)
    doc.write_text(content[:start] + "\n" + text + "\n" + content[end:])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", metavar="KEY", help="run only these scenarios")
    parser.add_argument("--no-write", action="store_true", help="print the table only")
    args = parser.parse_args(argv)
    chosen: list[Scenario] = [s for s in SCENARIOS if not args.only or s.key in args.only]
    when = machine_line()
    rows: list[Tally] = []
    failures: list[str] = []
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="gramlink-reliability-") as tmp:
        for scenario in chosen:
            t0 = time.monotonic()
            try:
                tally = run(scenario, Path(tmp) / scenario.key)
            except Exception as exc:  # one scenario's failure is a row of the table
                failures.append(f"{scenario.key}: {exc}")
                print(f"{scenario.key}: FAILED {exc}", file=sys.stderr, flush=True)
                continue
            rows.append(tally)
            print(
                f"{scenario.key}: published={tally.published} stored={tally.stored} "
                f"lost={tally.lost} duplicated={tally.duplicated} "
                f"recovery_s={tally.recovery_s} ({time.monotonic() - t0:.0f} s)",
                file=sys.stderr,
                flush=True,
            )
    text = f"Measured {when}; {time.monotonic() - started:.0f} s in all.\n\n{table(rows)}"
    if failures:
        text += "\n\nScenarios that could not be measured:\n\n" + "\n".join(
            f"- {line}" for line in failures
        )
    print(text)
    if not args.no_write and not args.only:
        write(DOC, text)
        print(f"written to {DOC}", file=sys.stderr)
    clean = all(t.clean and t.recovery_s is not None for t in rows)
    return 0 if clean and not failures else 1


if __name__ == "__main__":
    sys.exit(main())
