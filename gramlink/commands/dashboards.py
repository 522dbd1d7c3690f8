"""``gramlink dashboards build|push``: the Grafana dashboards as code (``dashboards/``)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "dashboards",
        help="build the Grafana dashboards' JSON, or push them to a Grafana",
        description="build: write dashboards/generated/*.json from the Python definitions "
        "(--check: fail if the committed files differ). push: create or update the InfluxDB "
        "datasource, the GramLink folder and every dashboard through Grafana's HTTP API.",
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    build = actions.add_parser("build", help="write dashboards/generated/*.json")
    build.add_argument(
        "--check", action="store_true", help="only compare; exit 1 if a file would change"
    )
    build.add_argument(
        "--dir", type=Path, default=None, help="where the JSON goes (dashboards/generated)"
    )
    build.set_defaults(func=run_build)
    push = actions.add_parser("push", help="create or update datasource, folder, dashboards")
    push.add_argument(
        "--grafana-url",
        default=os.environ.get("GRAMLINK_GRAFANA_URL", "http://127.0.0.1:3000"),
        help="Grafana's URL (env GRAMLINK_GRAFANA_URL)",
    )
    push.add_argument(
        "--token",
        default=os.environ.get("GRAMLINK_GRAFANA_TOKEN"),
        help="a Grafana service-account token with the Editor role on the folder and "
        "datasource write (env GRAMLINK_GRAFANA_TOKEN; prefer the variable)",
    )
    push.add_argument(
        "--influx-url",
        default=os.environ.get("GRAMLINK_GRAFANA_INFLUX_URL", "http://127.0.0.1:8086"),
        help="InfluxDB as Grafana reaches it (env GRAMLINK_GRAFANA_INFLUX_URL)",
    )
    push.add_argument(
        "--influx-database",
        default=os.environ.get("GRAMLINK_GRAFANA_INFLUX_DATABASE", "gramlink"),
        help="database (env GRAMLINK_GRAFANA_INFLUX_DATABASE)",
    )
    push.add_argument(
        "--influx-user",
        default=os.environ.get("GRAMLINK_GRAFANA_INFLUX_USER", "grafana"),
        help="a read-only InfluxDB user (env GRAMLINK_GRAFANA_INFLUX_USER)",
    )
    push.add_argument(
        "--influx-password",
        default=os.environ.get("GRAMLINK_GRAFANA_INFLUX_PASSWORD", ""),
        help="its password (env GRAMLINK_GRAFANA_INFLUX_PASSWORD; prefer the variable)",
    )
    push.add_argument("--timeout-s", type=float, default=10.0, help="timeout of one request")
    push.set_defaults(func=run_push)


def run_build(args: argparse.Namespace) -> int:
    from dashboards.build import GENERATED, model, render, write
    from dashboards.checks import problems

    directory: Path = args.dir or GENERATED
    found = [f"{name}: {line}" for name in _names() for line in problems(model(name))]
    for line in found:
        print(f"error: {line}", file=sys.stderr)
    if found:
        print("a dashboard would not load as written in Grafana 11.6", file=sys.stderr)
        return 1
    if args.check:
        stale = [
            name
            for name in _names()
            if not (directory / f"{name}.json").exists()
            or (directory / f"{name}.json").read_text() != render(name)
        ]
        for name in stale:
            print(f"{directory / name}.json differs from dashboards/{name}.py")
        if stale:
            print("run: gramlink dashboards build", file=sys.stderr)
        return 1 if stale else 0
    for file_name, changed in write(directory):
        print(f"{'written  ' if changed else 'unchanged'} {directory / file_name}")
    return 0


def _names() -> list[str]:
    from dashboards.build import DASHBOARDS

    return list(DASHBOARDS)


def run_push(args: argparse.Namespace) -> int:
    from dashboards.push import PushError, PushSettings, push

    if not args.token:
        print("error: no Grafana token: set GRAMLINK_GRAFANA_TOKEN or --token", file=sys.stderr)
        return 2
    settings = PushSettings(
        grafana_url=args.grafana_url,
        token=args.token,
        influx_url=args.influx_url,
        influx_database=args.influx_database,
        influx_user=args.influx_user,
        influx_password=args.influx_password,
        timeout_s=args.timeout_s,
    )
    try:
        for line in push(settings):
            print(line)
    except PushError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return int(exc.exit_code)
    return 0
