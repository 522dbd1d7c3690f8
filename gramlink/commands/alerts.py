"""``gramlink alerts``: the alert engine on its own (``run``, the default) and
``install-defaults`` (the default rule pack, idempotently).

Both read the API's settings (``GRAMLINK_API_*``: the registry is
``GRAMLINK_API_DB_URL``); ``--stack-home`` takes them from a local ``gramlink stack``
as ``gramlink api`` does.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from pydantic import ValidationError


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser("alerts", help="alerting: the engine, the default rules")
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
    from pathlib import Path

    default = argparse.SUPPRESS
    parser.add_argument("--db-url", default=default, help="the registry (GRAMLINK_API_DB_URL)")
    parser.add_argument("--mqtt-url", default=default, help="mqtt://host:port, central broker")
    parser.add_argument("--influx-url", default=default, help="http://host:port of InfluxDB")
    parser.add_argument(
        "--stack-home",
        type=Path,
        default=default,
        help="take URLs and admin passwords from a local `gramlink stack`",
    )


def run(args: argparse.Namespace) -> int:
    from api.settings import describe
    from gramlink.commands.api import settings_from

    try:
        settings = settings_from(args)
    except ValidationError as exc:
        print(f"error: {describe(exc)}", file=sys.stderr)
        return 2
    if getattr(args, "alerts_action", None) == "install-defaults":
        return install_defaults(settings)
    return run_engine(settings)


def run_engine(settings: Any) -> int:
    """``gramlink alerts`` / ``gramlink alerts run``: the engine (issue #12, engine part)."""
    print("error: the alert engine is not part of this build", file=sys.stderr)
    return 2


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
