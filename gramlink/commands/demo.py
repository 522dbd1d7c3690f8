"""``gramlink demo``: the whole system locally, until Ctrl-C."""

from __future__ import annotations

import argparse
from pathlib import Path

from gramlink.demo import DemoOptions, run_demo
from gramlink.stack import DEFAULT_HOME
from runtime.logs import configure


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser("demo", help="run the whole system locally until Ctrl-C")
    parser.add_argument("--home", type=Path, default=DEFAULT_HOME, help="state directory")
    parser.add_argument("--spokes", type=int, default=2, help="spoke centres besides the hub")
    parser.add_argument("--devices-per-centre", type=int, default=7)
    parser.add_argument("--api-port", type=int, default=8000)
    parser.add_argument("--mqtt-port", type=int, default=None, help="central broker port")
    parser.add_argument("--influx-port", type=int, default=None, help="InfluxDB port")
    parser.add_argument("--accelerate", type=float, default=720.0, help="simulated s per s")
    parser.add_argument("--history-days", type=float, default=7.0, help="simulation starts back")
    parser.add_argument("--duration", type=float, default=None, help="stop after S seconds")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # The simulated devices run in this process: their warnings use the one format.
    configure("warning")
    return run_demo(
        DemoOptions(
            home=args.home,
            spokes=args.spokes,
            devices_per_centre=args.devices_per_centre,
            api_port=args.api_port,
            mqtt_port=args.mqtt_port,
            influx_port=args.influx_port,
            accelerate=args.accelerate,
            history_days=args.history_days,
            duration_s=args.duration,
        )
    )
