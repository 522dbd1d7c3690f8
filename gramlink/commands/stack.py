"""``gramlink stack up|status|down``: the local Mosquitto and InfluxDB."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gramlink.services import ServiceError
from gramlink.stack import DEFAULT_HOME, Stack
from runtime.logs import configure


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser("stack", help="run the local Mosquitto and InfluxDB")
    parser.add_argument("action", choices=["up", "status", "down"])
    parser.add_argument("--home", type=Path, default=DEFAULT_HOME, help="state directory")
    parser.add_argument("--mqtt-port", type=int, default=None, help="default 1883")
    parser.add_argument("--influx-port", type=int, default=None, help="default 8086")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    configure("warning")
    try:
        stack = Stack(args.home, args.mqtt_port, args.influx_port)
        if args.action == "up":
            print("starting mosquitto and influxdb ...", flush=True)
            stack.up()
            for name, where in stack.endpoints().items():
                print(f"{name:12} {where}")
            return 0
        if args.action == "down":
            stopped = stack.down()
            print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
            return 0
        all_up = True
        for name, info in stack.status().items():
            state = "up" if info["up"] else "down"
            all_up &= info["up"]
            pid = f" pid {info['pid']}" if info["pid"] else ""
            print(f"{name:12} {state:5} {info['url']}{pid}")
        return 0 if all_up else 3
    except ServiceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
