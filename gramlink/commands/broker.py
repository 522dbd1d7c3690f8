"""``gramlink broker service-account ingest|alerts --mqtt-url URL``: a process's own login.

Run once per deployment (again to rotate the password) with the dynamic-security
admin's password in ``GRAMLINK_BROKER_ADMIN_PASSWORD``. Creates or corrects the
account and its role (exactly the rights the process needs, see
``gramlink/broker_accounts.py``), sets a new password and prints the settings
for the process's environment file, or writes them with ``--env-file`` (0600).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from gramlink.broker_accounts import (
    ACCOUNT_KINDS,
    AccountError,
    DynsecSession,
    account_for,
    ensure_account,
    new_password,
)
from mqttlink.endpoint import EndpointError, TlsFileError, TlsFiles
from runtime.logs import configure

ADMIN_PASSWORD_ENV = "GRAMLINK_BROKER_ADMIN_PASSWORD"


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser("broker", help="administer the central broker's accounts")
    actions = parser.add_subparsers(dest="broker_action", metavar="ACTION", required=True)
    account = actions.add_parser(
        "service-account",
        help="create a process's own login with exactly its rights (prints its settings)",
        description=f"The dynsec admin's password is read from {ADMIN_PASSWORD_ENV}.",
    )
    account.add_argument("kind", choices=ACCOUNT_KINDS)
    account.add_argument("--mqtt-url", required=True, help="mqtt://host:port or mqtts://host:port")
    account.add_argument("--admin-username", default="admin", help="dynsec admin (default admin)")
    account.add_argument("--username", default=None, help="the account's name (default: kind)")
    account.add_argument("--share-group", default="ingest", help="ingest's share group")
    account.add_argument("--ca-file", type=Path, default=None, help="CA of an mqtts:// broker")
    account.add_argument("--cert-file", type=Path, default=None, help="client certificate")
    account.add_argument("--key-file", type=Path, default=None, help="client key")
    account.add_argument(
        "--env-file",
        type=Path,
        default=None,
        help="set them in this env file (0600; other lines kept)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    configure("warning")
    admin_password = os.environ.get(ADMIN_PASSWORD_ENV, "")
    if not admin_password:
        print(
            f"error: {ADMIN_PASSWORD_ENV}: the dynsec admin's password is not set", file=sys.stderr
        )
        return 2
    username = args.username or args.kind
    account = account_for(args.kind, username, args.share_group)
    password = new_password()
    tls = TlsFiles(
        args.ca_file,
        args.cert_file,
        args.key_file,
        ca_setting="--ca-file",
        cert_setting="--cert-file",
        key_setting="--key-file",
    )
    try:
        with DynsecSession(args.mqtt_url, args.admin_username, admin_password, tls) as session:
            changed = ensure_account(session, account, password)
    except (EndpointError, TlsFileError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except AccountError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for line in changed:
        print(line, file=sys.stderr)
    prefix = f"GRAMLINK_{args.kind.upper()}_"
    values = {
        f"{prefix}MQTT_URL": args.mqtt_url,
        f"{prefix}MQTT_USERNAME": username,
        f"{prefix}MQTT_PASSWORD": password,
    }
    if args.env_file is None:
        print("".join(f"{key}={value}\n" for key, value in values.items()), end="")
        return 0
    update_env_file(args.env_file, values)
    print(f"wrote {', '.join(values)} to {args.env_file}", file=sys.stderr)
    return 0


def update_env_file(path: Path, values: dict[str, str]) -> None:
    """Set ``values`` in a ``KEY=value`` file (0600), keeping its other lines."""
    kept = []
    if path.exists():
        kept = [
            line
            for line in path.read_text().splitlines()
            if line.partition("=")[0].strip() not in values
        ]
    text = "".join(f"{line}\n" for line in kept)
    text += "".join(f"{key}={value}\n" for key, value in values.items())
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    os.replace(tmp, path)
