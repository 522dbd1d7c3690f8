"""CPU time of ingest's conversion per reading: ``PointBuilder.convert`` alone.

No broker, no InfluxDB: messages are built once, then converted many times in
this one process and timed with ``time.process_time``. Two workloads, readings
of every device kind mixed:

- ``envelope``: gateway envelopes of ``--records`` readings each (zlib JSON);
- ``single``: one reading per message (what a device publishes at QoS 1).

``--baseline DIR`` also runs the same measurement against another source tree
(e.g. ``git archive main | tar -x -C DIR``), alternating runs of the two in
separate processes so machine noise hits both alike, and prints the medians.

:func:`corpus` is also the test corpus of ``tests/ingest/test_convert_golden.py``:
readings of every kind, valid and refused, singles and envelopes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

NOW_MS = 1_780_000_000_000  # the clock every builder here is given
CENTRES = ("c-1", "c-22", "centre-3")
MODELS = ("tp-mr6400", "Victron MPPT 100/30", "omron,hem=7120", 'od\\d "q"', "ünï", "m\nx")
EVENT_NAMES = ("measurement", "grid_lost", "reboot", "power_restored")
DETAIL_STRINGS = ("x", 'quote " here', "back\\slash", "line\nbreak", "a,b=c d", "ünïcode ✓", "")


@dataclass(frozen=True)
class Birth:
    centre: str
    device: str
    model: str | None
    kind: str | None


def _bounds(info: Any) -> tuple[float | None, float | None]:
    found: dict[str, float] = {}

    def walk(metas: Any) -> None:
        for meta in metas:
            for bound in ("ge", "le"):
                value = getattr(meta, bound, None)
                if value is not None:
                    found[bound] = value
            walk(getattr(meta, "metadata", ()))

    walk(info.metadata)
    for arg in getattr(info.annotation, "__args__", ()):
        walk(getattr(arg, "__metadata__", ()))
    return found.get("ge"), found.get("le")


def _base_type(info: Any) -> type:
    args = getattr(info.annotation, "__args__", (info.annotation,))
    for arg in args:
        origin = getattr(arg, "__origin__", arg)
        if origin in (bool, int, float, str):
            return origin  # type: ignore[no-any-return]
    raise TypeError(info.annotation)


def metric_values(rng: random.Random, kind: str, names: list[str] | None = None) -> dict[str, Any]:
    """A random, valid metrics set of ``kind`` (never ``patient_id``), of ``names`` if given."""
    from contract.metrics import METRICS_BY_KIND, DeviceKind

    model = METRICS_BY_KIND[DeviceKind(kind)]
    out: dict[str, Any] = {}
    fixed = names
    names = [n for n in model.model_fields if n != "patient_id"]
    chosen = [] if fixed is not None else rng.sample(names, rng.randint(1, len(names)))
    if fixed is not None:
        chosen = fixed
    elif rng.random() < 0.7:
        chosen = sorted(chosen, key=names.index)
    for name in chosen:
        info = model.model_fields[name]
        base = _base_type(info)
        lo, hi = _bounds(info)
        if name == "patient_ref":
            out[name] = f"{rng.getrandbits(256):064x}"
        elif base is bool:
            out[name] = rng.random() < 0.5
        elif base is int:
            out[name] = rng.randint(int(lo or 0), int(min(hi or 10**6, 10**15)))
        else:
            low, high = float(lo if lo is not None else -1e6), float(hi if hi is not None else 1e6)
            roll = rng.random()
            if roll < 0.15:
                out[name] = int(rng.randint(int(low) + 1, max(int(low) + 1, int(high))))
            elif roll < 0.25:
                out[name] = rng.choice((low, high))
            elif roll < 0.4:
                out[name] = rng.uniform(low, high)  # full precision
            else:
                out[name] = round(rng.uniform(low, high), rng.randint(0, 3))
        if fixed is None and rng.random() < 0.05:
            out[name] = None  # an explicit null: left out of the point
    if all(v is None for v in out.values()):
        out[names[0]] = True if _base_type(model.model_fields[names[0]]) is bool else 1
    return out


def reading(
    rng: random.Random,
    kind: str,
    seq: int,
    *,
    event: bool | None = None,
    names: list[str] | None = None,
) -> dict[str, Any]:
    """A valid reading (telemetry, or an event when ``event``) as a dict.

    ``names``: the metrics it carries (by default a random set).
    """
    is_event = rng.random() < 0.25 if event is None else event
    ts = NOW_MS - rng.randint(0, 80 * 86_400_000) + rng.randint(0, 60_000)
    body: dict[str, Any] = {"v": 1, "kind": kind, "ts": ts, "seq": seq}
    if is_event:
        body["name"] = rng.choice(EVENT_NAMES)
        if rng.random() < 0.7:
            body["metrics"] = metric_values(rng, kind)
        if rng.random() < 0.6:
            body["detail"] = {
                f"k{i}": rng.choice(
                    (rng.choice(DETAIL_STRINGS), rng.randint(-5, 10**9), rng.random(), True)
                )
                for i in range(rng.randint(1, 3))
            }
    else:
        body["metrics"] = metric_values(rng, kind, names)
    if rng.random() < 0.5:
        body = dict(rng.sample(list(body.items()), len(body)))  # key order must not matter
    return body


def _dump(body: dict[str, Any], rng: random.Random) -> bytes:
    pretty = rng.random() < 0.1
    return json.dumps(body, separators=(", ", ": ") if pretty else (",", ":")).encode()


def _broken(rng: random.Random, kind: str, seq: int) -> dict[str, Any] | bytes:
    """A reading the contract or ingest refuses, one of many ways."""
    body = reading(rng, kind, seq, event=False)
    case = rng.randrange(17)
    if case == 0:
        body["metrics"]["battery_pct" if kind in _HEALTH else "cpu_pct"] = 101
    elif case == 1:
        body["kind"] = "toaster"
    elif case == 2:
        del body["v"]
    elif case == 3:
        body["v"] = 1.0
    elif case == 4:
        body["v"] = True
    elif case == 5:
        return b'{"v":1,"kind":"router","ts":'
    elif case == 6:
        return b"\xff\xfe\x00binary"
    elif case == 7:
        body["extra"] = 1
    elif case == 8:
        body["metrics"] = {}
    elif case == 9:
        body["ts"] = NOW_MS - 100 * 86_400_000  # older than the raw retention
    elif case == 10:
        body["ts"] = NOW_MS + 3_600_000  # ahead of ingest's clock
    elif case == 11:
        body["ts"] = -1
    elif case == 12:
        body["seq"] = 2**53 + 1
    elif case == 13:
        body["metrics"] = {"wan_up": "yes"} if kind == "router" else {"nope": 1}
    elif case == 14:
        body["v"] = 2
    elif case == 15:
        body["name"] = "Bad Name"
    else:
        body["metrics"] = {k: None for k in body["metrics"]}
    return body


_HEALTH = ("bp_monitor", "pulse_oximeter", "thermometer", "glucometer", "weighing_scale")
ALL_KINDS = ("router", "power", *_HEALTH, "gateway")


def _patient_id(rng: random.Random, kind: str, seq: int) -> dict[str, Any]:
    body = reading(rng, kind, seq, event=rng.random() < 0.5)
    metrics = body.setdefault("metrics", {"battery_pct": 50})
    metrics["patient_id"] = f"P-{rng.randint(1, 999)}"
    return body


def devices(rng: random.Random, per_kind: int = 3) -> tuple[list[Birth], dict[str, list[str]]]:
    """Births (some with a model, some with a mismatching or no kind) and devices per kind."""
    births: list[Birth] = []
    by_kind: dict[str, list[tuple[str, str]]] = {}
    for kind in ALL_KINDS:
        for i in range(per_kind):
            centre = rng.choice(CENTRES)
            device = f"{kind[:2]}-{i}"
            by_kind.setdefault(kind, []).append((centre, device))
            roll = rng.random()
            if roll < 0.6:
                births.append(Birth(centre, device, rng.choice(MODELS), kind))
            elif roll < 0.75:
                births.append(Birth(centre, device, rng.choice(MODELS), None))
            # else: no birth seen yet (model "unknown", kind not checked)
    return births, by_kind  # type: ignore[return-value]


def corpus(
    seed: int = 10, singles: int = 1500, envelopes: int = 60, records: int = 40
) -> tuple[list[Birth], list[tuple[str, bytes]]]:
    """Births to teach the builder, then ``(topic, payload)`` messages to convert.

    Valid readings of every kind, and refused ones of every quarantine reason
    ingest gives (contract errors, ``patient_id_at_central``, past and future
    ``ts``, ``kind_mismatch``, bad topics), as single messages and inside
    envelopes (with broken envelopes too).
    """
    rng = random.Random(seed)
    births, by_kind = devices(rng)
    # a device born as one kind publishing another: kind_mismatch
    births.append(Birth("c-1", "mismatch-1", "tp-mr6400", "router"))
    stamps = _stamps(births)
    messages: list[tuple[str, bytes]] = []
    seq = 0

    def pick(kind: str) -> tuple[str, str]:
        return rng.choice(by_kind[kind])  # type: ignore[arg-type]

    for _ in range(singles):
        seq += 1
        kind = rng.choice(ALL_KINDS)
        centre, device = pick(kind)
        roll = rng.random()
        body: dict[str, Any] | bytes
        if roll < 0.75:
            body = reading(rng, kind, seq)
        elif roll < 0.78:
            body = _patient_id(rng, rng.choice(_HEALTH), seq)
            centre, device = pick(body["kind"])
        elif roll < 0.80:
            body, centre, device = reading(rng, "power", seq), "c-1", "mismatch-1"
        else:
            body = _broken(rng, kind, seq)
        channel = "event" if isinstance(body, dict) and "name" in body else "telemetry"
        payload = body if isinstance(body, bytes) else _dump(body, rng)
        messages.append((f"gl/v1/{centre}/{device}/{channel}", payload))
    # topics and channels ingest refuses outright, and a message too large
    good = _dump(reading(rng, "router", 1, event=False), rng)
    messages += [
        ("gl/v2/c-1/r-0/telemetry", good),
        ("gl/v1/C-1/r-0/telemetry", good),
        ("gl/v1/c-1/r-0/state", b'{"v":1,"online":true}'),
        ("gl/v1/c-1/r-0/telemetry/extra", good),
        ("gl/v1/c-1/r-0/telemetry", b'{"v":1,"pad":"' + b"x" * 17_000 + b'"}'),
    ]
    for n in range(envelopes):
        centre = rng.choice(CENTRES)
        parts = []
        for _ in range(records):
            seq += 1
            kind = rng.choice(ALL_KINDS)
            _, device = pick(kind)
            roll = rng.random()
            if n % 3 == 0 or roll < 0.9:
                body = reading(rng, kind, seq)
            elif roll < 0.93:
                body = _patient_id(rng, rng.choice(_HEALTH), seq)
            elif roll < 0.95:
                body, device = reading(rng, "power", seq), "mismatch-1"
            else:
                body = _broken(rng, kind, seq)
                if isinstance(body, bytes):
                    body = {"raw": body.decode(errors="replace")}
            ch = "event" if "name" in body else "telemetry"
            parts.append(
                _stamped({"ch": ch, "dev": device, "p": body, "rx": NOW_MS}, stamps, centre)
            )
        envelope: dict[str, Any] = {"v": 1, "gw": f"gw-{centre}", "seq": n, "records": parts}
        if n == 7:
            del envelope["v"]
        if n == 8:
            parts[0]["dev"] = "Bad Id"
        raw = zlib.compress(json.dumps(envelope, separators=(",", ":")).encode(), 6)
        if n == 9:
            raw = raw[: len(raw) // 2]  # truncated stream
        messages.append((f"gl/v1/{centre}/gw-{centre}/_gateway/batch", raw))
    return births, messages


def _stamps(births: list[Birth]) -> dict[tuple[str, str], str]:
    """The model a gateway knows per (centre, device): what it stamps into each record."""
    return {(b.centre, b.device): b.model for b in births if b.model}


def _stamped(
    record: dict[str, Any], stamps: dict[tuple[str, str], str], centre: str
) -> dict[str, Any]:
    model = stamps.get((centre, record["dev"]))
    return record if model is None else {**record, "m": model}


def builder(births: list[Birth]) -> Any:
    from ingest.points import ModelCache, PointBuilder
    from ingest.quarantine import QuarantineLines

    models = ModelCache()
    for b in births:
        models.learn(b.centre, b.device, b.model, b.kind)
    return PointBuilder(
        models,
        QuarantineLines(),
        max_age_s=90 * 86_400,
        max_future_s=600,
        clock=lambda: NOW_MS / 1000,
    )


# --- the benchmark ---------------------------------------------------------------


def workload(name: str, records: int) -> tuple[list[Birth], list[tuple[str, bytes]], int]:
    """Valid telemetry only (the steady state): births, messages, the readings they carry.

    Every device was born (model and kind known) and reports the same metrics
    each time (its own random set); router and power readings dominate.
    """
    rng = random.Random(1)
    kinds = ("router", "power", "gateway", *_HEALTH)
    weights = (4, 4, 1, 1, 1, 1, 1, 1)
    births = [
        Birth(centre, f"{kind[:2]}-{i}", rng.choice(MODELS[:3]), kind)
        for centre in CENTRES
        for kind in kinds
        for i in range(5)
    ]
    reported = {(b.device, b.kind): list(metric_values(rng, b.kind or "router")) for b in births}
    stamps = _stamps(births)
    messages: list[tuple[str, bytes]] = []
    total = 3000
    per_message = records if name == "envelope" else 1
    for n in range(total // per_message):
        centre = CENTRES[n % len(CENTRES)]
        parts = []
        for i in range(per_message):
            kind = rng.choices(kinds, weights)[0]
            device = f"{kind[:2]}-{rng.randrange(5)}"
            names = reported[(device, kind)]
            body = reading(rng, kind, n * per_message + i, event=False, names=names)
            if name == "single":
                messages.append((f"gl/v1/{centre}/{device}/telemetry", _dump(body, rng)))
            else:
                record = {"ch": "telemetry", "dev": device, "p": body, "rx": NOW_MS}
                parts.append(_stamped(record, stamps, centre))
        if name == "envelope":
            env = {"v": 1, "gw": f"gw-{centre}", "seq": n, "records": parts}
            raw = zlib.compress(json.dumps(env, separators=(",", ":")).encode(), 6)
            messages.append((f"gl/v1/{centre}/gw-{centre}/_gateway/batch", raw))
    return births, messages, len(messages) * per_message


def measure(name: str, records: int, seconds: float) -> float:
    """CPU µs per reading of ``convert`` over ``name``'s messages, the best of 5 rounds."""
    births, messages, readings = workload(name, records)
    b = builder(births)
    convert = b.convert
    out: list[str] = []
    for topic, payload in messages:  # warm the caches
        convert(topic, payload, out)
    if any(line.startswith("quarantine") for line in out):
        raise SystemExit(f"{name}: the workload has refused readings: {out[0][:200]}")
    rounds = []
    for _ in range(5):
        done = 0
        start = time.process_time()
        while True:
            out = []
            for topic, payload in messages:
                convert(topic, payload, out)
            done += readings
            used = time.process_time() - start
            if used >= seconds / 5:
                break
        rounds.append(used / done * 1e6)
    return min(rounds)


def parts(records: int, seconds: float) -> dict[str, float]:
    """Where an envelope's CPU goes: each step alone, µs per reading (this tree only)."""
    from pydantic import TypeAdapter

    from contract.codec import _inflate, decode_batch_readings
    from contract.fast_schema import BATCH

    births, messages, readings = workload("envelope", records)
    raws = [_inflate(payload) for _, payload in messages]
    untyped = TypeAdapter(Any)
    b = builder(births)
    steps = {
        "inflate": lambda: [_inflate(payload) for _, payload in messages],
        "parse JSON only": lambda: [untyped.validate_json(raw) for raw in raws],
        "parse + validate (msgspec)": lambda: [BATCH.decode(raw) for raw in raws],
        "decode_batch_readings": lambda: [decode_batch_readings(p) for _, p in messages],
        "convert": lambda: [b.convert(topic, p, []) for topic, p in messages],
    }
    out = {}
    for name, step in steps.items():
        step()
        best = []
        for _ in range(5):
            done, start = 0, time.process_time()
            while time.process_time() - start < seconds / 25:
                step()
                done += readings
            best.append((time.process_time() - start) / done * 1e6)
        out[name] = min(best)
    return out


def _worker(args: argparse.Namespace) -> None:
    result = {w: measure(w, args.records, args.seconds) for w in ("envelope", "single")}
    print(json.dumps(result))


def _run(tree: Path, args: argparse.Namespace) -> dict[str, float]:
    env = dict(os.environ, PYTHONPATH=str(tree))
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker"]
    cmd += ["--records", str(args.records), "--seconds", str(args.seconds)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100, help="readings per envelope")
    parser.add_argument("--seconds", type=float, default=2.0, help="CPU seconds per workload")
    parser.add_argument("--runs", type=int, default=3, help="runs (alternated with --baseline)")
    parser.add_argument("--baseline", type=Path, help="another source tree to compare with")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--parts", action="store_true", help="time an envelope's steps apart")
    args = parser.parse_args()
    if args.parts:
        for name, us in parts(args.records, args.seconds).items():
            print(f"{name:24s} {us:.2f} µs per reading")
        return 0
    if args.worker:
        _worker(args)
        return 0
    here = Path(__file__).resolve().parent.parent
    trees = {"this tree": here}
    if args.baseline is not None:
        trees = {"baseline": args.baseline.resolve(), "this tree": here}
    load = os.getloadavg()
    print(
        f"# {platform.node()} {platform.processor() or platform.machine()} "
        f"{os.cpu_count()} cpus, python {platform.python_version()}, "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
        f"load {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )
    results: dict[str, list[dict[str, float]]] = {name: [] for name in trees}
    for run in range(args.runs):
        for name, tree in trees.items():
            got = _run(tree, args)
            results[name].append(got)
            print(
                f"run {run + 1} {name:9s} " + "  ".join(f"{w} {v:.2f} µs" for w, v in got.items()),
                flush=True,
            )
    print(f"median CPU µs per reading ({args.records} readings per envelope):")
    for name, runs in results.items():
        medians = {w: statistics.median(r[w] for r in runs) for w in runs[0]}
        print(f"  {name:9s} " + "  ".join(f"{w} {v:.2f}" for w, v in medians.items()))
    return 0


if __name__ == "__main__":
    if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
        del sys.path[0]  # run as a script (--worker): bench/ingest.py is not ``ingest``
    sys.exit(main())
