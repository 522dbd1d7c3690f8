"""``gramlink alerts``: run the alert engine on its own.

Every option is also a ``GRAMLINK_ALERTS_*`` environment variable; ``--stack-home``
takes the registry, the broker (with the engine's own ``alerts`` account) and
InfluxDB of a local ``gramlink stack``. Further actions (``install-defaults``)
are subcommands of the same parser.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from pydantic import ValidationError


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "alerts",
        help="run the alert engine on its own (it also runs inside the API)",
        description="Every option is also a GRAMLINK_ALERTS_* environment variable. "
        "Turn the API's own engine off (GRAMLINK_API_ALERTS=false) where this runs.",
    )
    _options(parser)
    parser.set_defaults(func=run)


def _options(parser: argparse.ArgumentParser) -> None:
    default = argparse.SUPPRESS
    parser.add_argument("--db-url", default=default, help="the registry's SQLAlchemy URL")
    parser.add_argument(
        "--mqtt-url", default=default, help="mqtt://host:port of the central broker"
    )
    parser.add_argument("--client-id", default=default, help="default gl-alerts-HOST")
    parser.add_argument("--influx-url", default=default, help="http://host:port of InfluxDB")
    parser.add_argument("--metrics-port", type=int, default=default, help="0: no /metrics")
    parser.add_argument(
        "--stack-home",
        type=Path,
        default=default,
        help="take the registry, broker login and InfluxDB of a local `gramlink stack`",
    )


def settings_from(args: argparse.Namespace) -> Any:
    from api.alerts.settings import AlertsSettings

    overrides: dict[str, Any] = {}
    home = getattr(args, "stack_home", None)
    if home is not None:
        from gramlink.stack import ALERTS_USER, Stack

        stack = Stack(home)
        env = os.environ
        stacked = {
            "mqtt_url": stack.mosquitto.url,
            "mqtt_username": ALERTS_USER,
            "mqtt_password": stack.alerts_password,
            "influx_url": stack.influx.url,
            "influx_password": stack.influx.admin_password,
            "db_url": f"sqlite:///{stack.home / 'api.sqlite'}",
        }
        for name, value in stacked.items():
            if f"GRAMLINK_ALERTS_{name.upper()}" not in env:
                overrides[name] = value
    for name in ("db_url", "mqtt_url", "client_id", "influx_url", "metrics_port"):
        if hasattr(args, name):
            overrides[name] = getattr(args, name)
    return AlertsSettings(**overrides)


def run(args: argparse.Namespace) -> int:
    from api.alerts.settings import describe
    from runtime.logs import configure

    try:
        settings = settings_from(args)
    except ValidationError as exc:
        print(f"error: {describe(exc)}", file=sys.stderr)
        return 2
    configure(settings.log_level)
    from api.alerts.run import run as run_engine

    return run_engine(settings)
