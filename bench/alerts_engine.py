"""Alert engine benchmark: ``.venv/bin/python -m bench.alerts_engine [--centres N]``.

How many readings per second one engine process evaluates with the default
pack (18 rules, scope all) over ``--centres`` centres (a gateway, a router, a
power unit and a pulse oximeter each), and what it holds in memory. In process,
without a broker: gateway envelopes (``--records`` readings each, as the
gateway sends them) are handed to :meth:`api.alerts.engine.Engine.round`
``--round`` messages at a time, exactly as the engine thread does after taking
them off its MQTT queue; every round is one registry transaction (SQLite, or
``--db-url``), so the figure includes writing the evaluator states. The device
clock advances one minute per reading; a tenth of the power units drain below
20 %, so battery-low alerts go pending, fire and fold repeats during the run.
Reports readings/s, rounds/s, the states held and the process's peak RSS.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

from prometheus_client import CollectorRegistry

from alerting.defaults import DEFAULT_PACK
from api.alerts.consumer import Message
from api.alerts.engine import Engine
from api.alerts.metrics import EngineMetrics
from api.alerts.settings import AlertsSettings
from api.db.models import AlertRule, Centre, Device
from api.db.session import make_engine, migrate, session_factory
from contract.codec import encode, encode_batch_parts
from contract.messages import telemetry
from contract.metrics import PowerMetrics, RouterMetrics
from contract.topics import Channel, topic

MINUTE = 60_000


def setup(db_url: str, centres: int) -> None:
    engine = make_engine(db_url)
    migrate(engine)
    sessions = session_factory(engine)
    with sessions.begin() as s:
        for key, spec in DEFAULT_PACK.items():
            s.add(
                AlertRule(
                    id=key,
                    name=spec.name,
                    severity=spec.severity.value,
                    enabled=True,
                    spec=spec.model_dump(mode="json", by_alias=True),
                    version=1,
                    pack_key=key,
                )
            )
        for c in range(centres):
            centre = f"c{c}"
            s.add(Centre(id=centre, name=centre, district=f"d{c % 20}", state="s"))
            for kind in ("gateway", "router", "power", "pulse_oximeter"):
                s.add(Device(id=f"{centre}-{kind[:3]}", centre_id=centre, kind=kind, model="m"))
    engine.dispose()


def envelopes(centres: int, records: int, minutes: int, t0: int) -> list[Message]:
    """Per centre, ``minutes`` of router and power readings in envelopes of ``records``."""
    out: list[Message] = []
    seq: dict[str, int] = {}
    for start in range(0, minutes, records // 2):
        for c in range(centres):
            centre = f"c{c}"
            parts = []
            for m in range(start, min(start + records // 2, minutes)):
                ts = t0 + m * MINUTE
                soc = max(5.0, 80 - m) if c % 10 == 0 else 70.0 + (m % 5)
                for device, body in (
                    (f"{centre}-rou", RouterMetrics(wan_up=True, wan_latency_ms=120.0 + m % 7)),
                    (
                        f"{centre}-pow",
                        PowerMetrics(
                            battery_soc_pct=soc,
                            battery_temp_c=30.0,
                            grid_present=c % 10 != 0,
                            load_power_w=150.0,
                        ),
                    ),
                ):
                    seq[device] = seq.get(device, 0) + 1
                    kind = "router" if device.endswith("rou") else "power"
                    payload = encode(telemetry(kind, ts=ts, seq=seq[device], metrics=body))
                    parts.append(("telemetry", device, payload, ts))
            gw = f"{centre}-gat"
            out.append(
                Message(
                    topic(centre, gw, Channel.GATEWAY_BATCH),
                    encode_batch_parts(gw, start, parts),
                    0,
                    0,
                    0,
                    time.monotonic(),
                )
            )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--centres", type=int, default=1000)
    parser.add_argument("--minutes", type=int, default=30, help="device minutes per centre")
    parser.add_argument("--records", type=int, default=10, help="readings per envelope")
    parser.add_argument("--round", type=int, default=200, help="messages per round")
    parser.add_argument("--db-url", default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db_url = args.db_url or f"sqlite:///{Path(tmp) / 'registry.sqlite'}"
        setup(db_url, args.centres)
        settings = AlertsSettings(db_url=db_url, influx_url="", round_max=args.round)
        engine_db = make_engine(db_url)
        engine = Engine(settings, session_factory(engine_db), EngineMetrics(CollectorRegistry()))
        engine.load()
        t0 = time.time_ns() // 1_000_000
        messages = envelopes(args.centres, args.records, args.minutes, t0)
        readings = args.centres * args.minutes * 2
        started = time.perf_counter()
        cpu = time.process_time()
        fired = notified = 0
        for i in range(0, len(messages), args.round):
            tally = engine.round(messages[i : i + args.round], tick=True)
            fired += tally.fired
            notified += tally.notifications
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu
        rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        rounds = (len(messages) + args.round - 1) // args.round
        print(
            f"centres {args.centres}  readings {readings}  envelopes {len(messages)}  "
            f"rounds {rounds}\n"
            f"readings/s {readings / elapsed:,.0f}  rounds/s {rounds / elapsed:.1f}  "
            f"CPU µs/reading {cpu / readings * 1e6:.0f}\n"
            f"states held {len(engine.conditions)}  alerts fired {fired}  "
            f"peak RSS {rss_mb:.0f} MB"
        )
        engine_db.dispose()


if __name__ == "__main__":
    main()
