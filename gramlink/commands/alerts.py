"""``gramlink alerts``: the alert engine on its own (``run``, the default) and
``install-defaults`` (the default rule pack, idempotently).

The engine reads ``GRAMLINK_ALERTS_*`` (every option is one too); with
``--stack-home`` it takes the registry, the broker (with the engine's own
``alerts`` account) and InfluxDB of a local ``gramlink stack``. Turn the API's
own engine off (``GRAMLINK_API_ALERTS=false``) where it runs alone.
``install-defaults`` reads the API's settings (``GRAMLINK_API_*``: the registry
is ``GRAMLINK_API_DB_URL``); ``--stack-home`` takes them as ``gramlink api`` does.
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
        help="alerting: the engine on its own (it also runs inside the API), the default rules",
        description="Every option of the engine is also a GRAMLINK_ALERTS_* environment "
        "variable. Turn the API's own engine off (GRAMLINK_API_ALERTS=false) where it runs.",
    )
    _options(parser)
    actions = parser.add_subparsers(dest="alerts_action", metavar="ACTION")
    engine = actions.add_parser("run", help="run the alert engine on its own (the default)")
    _options(engine)
    install = actions.add_parser(
        "install-defaults",
        help="install the default rule pack (again: changes nothing; edited rules are kept)",
    )
    _options(install)
    parser.set_defaults(func=run)


def _options(parser: argparse.ArgumentParser) -> None:
    default = argparse.SUPPRESS
    parser.add_argument("--db-url", default=default, help="the registry's SQLAlchemy URL")
    parser.add_argument("--mqtt-url", default=default, help="mqtt://host:port, central broker")
    parser.add_argument("--influx-url", default=default, help="http://host:port of InfluxDB")
    parser.add_argument(
        "--client-id",
        default=default,
        help="engine: default gl-alerts-HOST (edge session: ID-edge)",
    )
    parser.add_argument("--metrics-port", type=int, default=default, help="engine: 0, off")
    parser.add_argument(
        "--stack-home",
        type=Path,
        default=default,
        help="take the registry, broker login and InfluxDB of a local `gramlink stack`",
    )


def engine_settings(args: argparse.Namespace) -> Any:
    from api.alerts.settings import AlertsSettings

    overrides: dict[str, Any] = {}
    home = getattr(args, "stack_home", None)
    if home is not None:
        from gramlink.stack import ALERTS_USER, Stack

        stack = Stack(home)
        stacked = {
            "mqtt_url": stack.mosquitto.url,
            "mqtt_username": ALERTS_USER,
            "mqtt_password": stack.alerts_password,
            "influx_url": stack.influx.url,
            "influx_password": stack.influx.admin_password,
            "db_url": f"sqlite:///{stack.home / 'api.sqlite'}",
        }
        for name, value in stacked.items():
            if f"GRAMLINK_ALERTS_{name.upper()}" not in os.environ:
                overrides[name] = value
    for name in ("db_url", "mqtt_url", "client_id", "influx_url", "metrics_port"):
        if hasattr(args, name):
            overrides[name] = getattr(args, name)
    return AlertsSettings(**overrides)


def run(args: argparse.Namespace) -> int:
    if getattr(args, "alerts_action", None) == "install-defaults":
        from api.settings import describe as describe_api
        from gramlink.commands.api import settings_from

        try:
            api_settings = settings_from(args)
        except ValidationError as exc:
            print(f"error: {describe_api(exc)}", file=sys.stderr)
            return 2
        return install_defaults(api_settings)
    from api.alerts.settings import describe
    from runtime.logs import configure

    try:
        settings = engine_settings(args)
    except ValidationError as exc:
        print(f"error: {describe(exc)}", file=sys.stderr)
        return 2
    configure(settings.log_level)
    from api.alerts.run import run as run_engine

    return run_engine(settings)


def install_defaults(settings: Any) -> int:
    from api.db.session import make_engine, migrate, session_factory
    from api.services.alert_pack import install

    engine = make_engine(settings.db_url)
    try:
        migrate(engine)
        with session_factory(engine).begin() as session:
            done = install(session, "cli:install-defaults")
            names = {row.id: row.name for row in _rules(session, [d.rule_id for d in done])}
    finally:
        engine.dispose()
    notes = {"installed": "", "kept": "", "kept-edited": "  (edited since: left as it is)"}
    for item in done:
        label = "kept" if item.outcome == "kept-edited" else item.outcome
        print(f"{label:10} {item.rule_id:28} {names.get(item.rule_id, '')}{notes[item.outcome]}")
    installed = sum(1 for d in done if d.outcome == "installed")
    print(f"{len(done)} default rules: {installed} installed, {len(done) - installed} kept")
    return 0


def _rules(session: Any, ids: list[str]) -> list[Any]:
    from sqlalchemy import select

    from api.db.models import AlertRule

    return list(session.scalars(select(AlertRule).where(AlertRule.id.in_(ids))))
