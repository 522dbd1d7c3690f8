"""``gramlink api``: run the API; ``create-token``, ``list-tokens``, ``revoke-token``,
``export-credentials``.

Options override the ``GRAMLINK_API_*`` environment; ``--stack-home`` takes the
broker and InfluxDB admin passwords of a local ``gramlink stack`` and keeps device
logins in that broker's password and ACL files.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pydantic import ValidationError


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser("api", help="run the registry and provisioning API")
    _options(parser)
    actions = parser.add_subparsers(dest="api_action", metavar="ACTION")
    token = actions.add_parser("create-token", help="create an API token (printed once)")
    _options(token)
    token.add_argument("--role", required=True, choices=["admin", "technician", "viewer"])
    token.add_argument("--name", default=None, help="who holds it (default: the role)")
    listing = actions.add_parser("list-tokens", help="list API tokens (never their secrets)")
    _options(listing)
    revoke = actions.add_parser("revoke-token", help="revoke an API token at once")
    _options(revoke)
    revoke.add_argument("--id", dest="token_id", type=int, required=True, help="from list-tokens")
    export = actions.add_parser(
        "export-credentials",
        help="write centre_id,device_id,kind,model,username,password of live devices (0600)",
    )
    _options(export)
    export.add_argument("--out", type=Path, required=True)
    export.add_argument("--centre", default=None, help="only this centre")
    export.add_argument(
        "--centre-keys",
        type=Path,
        default=None,
        help="also write centre_id,gateway_id,centre_key (0600)",
    )
    parser.set_defaults(func=run)


def _options(parser: argparse.ArgumentParser) -> None:
    default = argparse.SUPPRESS
    parser.add_argument(
        "--db-url", default=default, help="SQLAlchemy URL (sqlite:///..., postgresql://...)"
    )
    parser.add_argument(
        "--mqtt-url", default=default, help="mqtt://host:port of the central broker"
    )
    parser.add_argument("--influx-url", default=default, help="http://host:port of InfluxDB")
    parser.add_argument(
        "--broker-files-dir",
        type=Path,
        default=default,
        help="keep device logins in the central broker's password/ACL files in this directory",
    )
    parser.add_argument("--host", default=default)
    parser.add_argument("--port", type=int, default=default)
    parser.add_argument(
        "--stack-home",
        type=Path,
        default=default,
        help="take URLs and admin passwords from a local `gramlink stack`",
    )


def settings_from(args: argparse.Namespace) -> Any:
    from api.settings import ApiSettings

    overrides: dict[str, Any] = {}
    home = getattr(args, "stack_home", None)
    if home is not None:
        from gramlink.stack import Stack

        stack = Stack(home)
        env = os.environ
        if "GRAMLINK_API_MQTT_URL" not in env:
            overrides["mqtt_url"] = stack.mosquitto.url
        if "GRAMLINK_API_MQTT_ADMIN_PASSWORD" not in env:
            overrides["mqtt_admin_password"] = stack.mosquitto.admin_password
        if "GRAMLINK_API_INFLUX_URL" not in env:
            overrides["influx_url"] = stack.influx.url
        if "GRAMLINK_API_INFLUX_PASSWORD" not in env:
            overrides["influx_password"] = stack.influx.admin_password
        if "GRAMLINK_API_BROKER_FILES_DIR" not in env:
            overrides["broker_files_dir"] = stack.mosquitto.home
        if "GRAMLINK_API_DB_URL" not in env:
            overrides["db_url"] = f"sqlite:///{stack.home / 'api.sqlite'}"
    for name in ("db_url", "mqtt_url", "influx_url", "host", "port", "broker_files_dir"):
        if hasattr(args, name):
            overrides[name] = getattr(args, name)
    return ApiSettings(**overrides)


def run(args: argparse.Namespace) -> int:
    from api.settings import describe

    try:
        settings = settings_from(args)
    except ValidationError as exc:
        print(f"error: {describe(exc)}", file=sys.stderr)
        return 2
    action = getattr(args, "api_action", None)
    if action == "create-token":
        return create_token(settings, args.role, args.name or args.role)
    if action == "list-tokens":
        return list_tokens(settings)
    if action == "revoke-token":
        return revoke_token(settings, args.token_id)
    if action == "export-credentials":
        return export_credentials(settings, args.out, args.centre, args.centre_keys)
    from api.main import run as serve
    from runtime.logs import configure

    configure(settings.log_level)
    return serve(settings)


@contextmanager
def _registry(settings: Any) -> Iterator[Any]:
    """A transaction on the migrated registry, for the actions run on the API host."""
    from api.db.session import make_engine, migrate, session_factory

    engine = make_engine(settings.db_url)
    try:
        migrate(engine)
        with session_factory(engine).begin() as session:
            yield session
    finally:
        engine.dispose()


def create_token(settings: Any, role: str, name: str) -> int:
    from api.schemas import Role
    from api.services.tokens import create_token as make

    with _registry(settings) as session:
        token = make(session, Role(role), name)
    print(token)
    return 0


def list_tokens(settings: Any) -> int:
    from api.services.tokens import listing

    with _registry(settings) as session:
        rows, _ = listing(session, limit=1_000_000, offset=0)
        print(f"{'id':>4}  {'role':10}  {'created':25}  {'revoked':7}  name")
        for row in rows:
            created = row.created_at.isoformat(timespec="seconds")
            print(f"{row.id:>4}  {row.role:10}  {created:25}  {row.revoked!s:7}  {row.name}")
    return 0


def revoke_token(settings: Any, token_id: int) -> int:
    from api.errors import ApiError
    from api.services.tokens import revoke

    try:
        with _registry(settings) as session:
            row = revoke(session, "cli", token_id)
            print(f"revoked token {row.id} ({row.role}, {row.name})")
    except ApiError as exc:
        print(f"error: {exc.detail}", file=sys.stderr)
        return 2
    return 0


def _private(path: Path) -> Any:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    return os.fdopen(fd, "w", newline="")


def export_credentials(settings: Any, out: Path, centre: str | None, keys_out: Path | None) -> int:
    from sqlalchemy import select

    from api.db.models import Centre, Device
    from api.services.bulk import CSV_HEADER
    from contract.provisioning import centre_key, device_password, encode_key, mqtt_username

    master = settings.master_secret.get_secret_value().encode()
    rows = keys = 0
    with _registry(settings) as session, _private(out) as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(CSV_HEADER)
        query = (
            select(Device, Centre)
            .join(Centre, Device.centre_id == Centre.id)
            .where(Device.status.in_(("provisioned", "active", "suspended")))
        )
        if centre is not None:
            query = query.where(Device.centre_id == centre)
        gateways = []
        for device, where in session.execute(query.order_by(Device.centre_id, Device.id)):
            key = centre_key(master, where.id, where.key_version)
            password = device_password(key, device.id, device.credential_version)
            username = mqtt_username(where.id, device.id)
            gateway_key = encode_key(key) if device.kind == "gateway" else ""
            writer.writerow(
                [where.id, device.id, device.kind, device.model, username, password, gateway_key]
            )
            rows += 1
            if device.kind == "gateway":
                gateways.append((where.id, device.id, gateway_key))
        if keys_out is not None:
            with _private(keys_out) as keys_handle:
                keys_writer = csv.writer(keys_handle, lineterminator="\n")
                keys_writer.writerow(["centre_id", "gateway_id", "centre_key"])
                keys_writer.writerows(gateways)
                keys = len(gateways)
    print(f"wrote {rows} credentials to {out}" + (f", {keys} centre keys" if keys_out else ""))
    return 0
