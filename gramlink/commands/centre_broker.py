"""``gramlink centre-broker install|tablet``: the centre's Mosquitto as GramLink needs it.

Run once on the gateway box, as root (again after an upgrade: it is
idempotent). Writes the shipped ``centre_broker.conf`` into Mosquitto's
``conf.d`` with this site's listener, creates the dynamic-security file with
an ``admin`` client the first time (password from
``GRAMLINK_CENTRE_BROKER_ADMIN_PASSWORD``, else a new one), and prints the
gateway's settings for its local broker, or writes them with ``--env-file``
(0600, other lines kept). It does not restart Mosquitto: it says so.

``tablet --centre ID``: a read-only login for a tablet or display at the centre
(:func:`gramlink.broker_accounts.tablet_account`), made on the running centre
broker as its dynsec admin, with the gateway's own settings for that broker
(``GRAMLINK_GATEWAY_LOCAL_{URL,USERNAME,PASSWORD,CA_FILE}``, from the
environment or from the gateway's ``--env-file``). Idempotent; the password is
``GRAMLINK_CENTRE_TABLET_PASSWORD`` if set, else a new one (so running it again
rotates it); prints the login and what to subscribe to.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from gramlink.broker_accounts import (
    AccountError,
    DynsecSession,
    ensure_account,
    new_password,
    tablet_account,
)
from gramlink.commands.broker import update_env_file
from gramlink.services.centre_broker import (
    DEBIAN_CONF_DIR,
    DEBIAN_DYNSEC_FILE,
    CentreBroker,
    TlsListener,
    install,
    main_conf_includes,
)
from gramlink.services.dynsec_file import ADMIN_USER
from gramlink.services.process import ServiceError
from mqttlink.endpoint import EndpointError, TlsFileError, TlsFiles
from runtime.exits import ExitCode
from runtime.logs import configure

ADMIN_PASSWORD_ENV = "GRAMLINK_CENTRE_BROKER_ADMIN_PASSWORD"
TABLET_PASSWORD_ENV = "GRAMLINK_CENTRE_TABLET_PASSWORD"
LOCAL_ENV = "GRAMLINK_GATEWAY_LOCAL_"


def listen_address(text: str) -> tuple[str, int]:
    """``ADDR[:PORT]`` (port 1883 when left out)."""
    host, sep, port = text.rpartition(":")
    if not sep:
        return text, 1883
    try:
        number = int(port)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not ADDR[:PORT]: {text!r}") from None
    if not host or not 0 < number < 65536:
        raise argparse.ArgumentTypeError(f"not ADDR[:PORT]: {text!r}")
    return host, number


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "centre-broker", help="install the centre broker's Mosquitto configuration"
    )
    actions = parser.add_subparsers(dest="centre_broker_action", metavar="ACTION", required=True)
    inst = actions.add_parser(
        "install",
        help="write the drop-in and the dynsec file (idempotent; restart mosquitto after)",
        description=f"The admin's password is {ADMIN_PASSWORD_ENV} if set, else a new one.",
    )
    inst.add_argument("--conf-dir", type=Path, default=DEBIAN_CONF_DIR, help="Mosquitto's conf.d")
    inst.add_argument(
        "--dynsec-file", type=Path, default=DEBIAN_DYNSEC_FILE, help="dynamic-security JSON file"
    )
    inst.add_argument(
        "--listen",
        type=listen_address,
        default=("0.0.0.0", 1883),
        metavar="ADDR[:PORT]",
        help="the listener on the centre LAN (default 0.0.0.0:1883)",
    )
    inst.add_argument("--tls-port", type=int, default=None, help="also a TLS listener here")
    inst.add_argument("--certfile", type=Path, default=None, help="its certificate (PEM)")
    inst.add_argument("--keyfile", type=Path, default=None, help="its private key (PEM)")
    inst.add_argument(
        "--env-file",
        type=Path,
        default=None,
        help="set the gateway's GRAMLINK_GATEWAY_LOCAL_* there (0600; other lines kept)",
    )
    tablet = actions.add_parser(
        "tablet",
        help="a read-only login for a centre tablet or display (the centre's alerts)",
        description="Made on the running centre broker with the gateway's local admin login"
        f" ({LOCAL_ENV}URL, _USERNAME, _PASSWORD, _CA_FILE from the environment or --env-file)."
        f" The password is {TABLET_PASSWORD_ENV} if set, else a new one.",
    )
    tablet.add_argument("--centre", required=True, help="the centre's id")
    tablet.add_argument("--username", default="tablet", help="the login (default tablet)")
    tablet.add_argument(
        "--readings",
        action="store_true",
        help="also the centre's readings (telemetry, events), read only, for a display",
    )
    tablet.add_argument(
        "--env-file",
        type=Path,
        default=None,
        help="the gateway's env file to read its local broker login from",
    )
    parser.set_defaults(func=dispatch)


def dispatch(args: argparse.Namespace) -> int:
    if args.centre_broker_action == "tablet":
        return run_tablet(args)
    return run(args)


def read_env_file(path: Path) -> dict[str, str]:
    """``KEY=value`` lines (blank lines, comments and other lines skipped)."""
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and not key.lstrip().startswith("#"):
            values[key.strip()] = value.strip()
    return values


def run_tablet(args: argparse.Namespace) -> int:
    configure("warning")
    settings: dict[str, str] = {}
    try:
        if args.env_file is not None:
            settings.update(read_env_file(args.env_file))
    except OSError as exc:
        print(f"error: --env-file: {exc}", file=sys.stderr)
        return int(ExitCode.CONFIG)
    settings.update({k: v for k, v in os.environ.items() if k.startswith(LOCAL_ENV)})
    url = settings.get(f"{LOCAL_ENV}URL", "mqtt://127.0.0.1:1883")
    admin = settings.get(f"{LOCAL_ENV}USERNAME", ADMIN_USER)
    admin_password = settings.get(f"{LOCAL_ENV}PASSWORD", "")
    if not admin_password:
        print(
            f"error: {LOCAL_ENV}PASSWORD: the centre broker's admin password is not set",
            file=sys.stderr,
        )
        return int(ExitCode.CONFIG)
    if "/" in args.username or args.username == admin:
        print(
            f"error: --username {args.username!r}: a device's login or the admin's", file=sys.stderr
        )
        return int(ExitCode.CONFIG)
    try:
        account = tablet_account(args.centre, args.username, args.readings)
    except ValueError as exc:
        print(f"error: --centre: {exc}", file=sys.stderr)
        return int(ExitCode.CONFIG)
    password = os.environ.get(TABLET_PASSWORD_ENV) or new_password()
    ca = settings.get(f"{LOCAL_ENV}CA_FILE")
    tls = TlsFiles(Path(ca) if ca else None, ca_setting=f"{LOCAL_ENV}CA_FILE")
    try:
        with DynsecSession(url, admin, admin_password, tls) as session:
            changed = ensure_account(session, account, password)
    except (EndpointError, TlsFileError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return int(ExitCode.CONFIG)
    except AccountError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return int(ExitCode.DEPENDENCY_DOWN)
    for line in changed:
        print(line, file=sys.stderr)
    print(f"url={url}")
    print(f"username={args.username}")
    print(f"password={password}")
    for acl in account.acls:
        if acl.acltype == "subscribePattern":
            print(f"subscribe={acl.topic}")
    return int(ExitCode.OK)


def run(args: argparse.Namespace) -> int:
    tls_given = [args.tls_port, args.certfile, args.keyfile]
    if any(v is not None for v in tls_given) and None in tls_given:
        print("error: --tls-port, --certfile and --keyfile go together", file=sys.stderr)
        return int(ExitCode.CONFIG)
    tls = TlsListener(args.tls_port, args.certfile, args.keyfile) if args.tls_port else None
    address, port = args.listen
    broker = CentreBroker(args.conf_dir, args.dynsec_file, address, port, tls)
    fresh = not broker.dynsec_file.exists()
    password = os.environ.get(ADMIN_PASSWORD_ENV) or new_password()
    try:
        done = install(broker, password)
    except ServiceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return int(ExitCode.INTERNAL)
    for line in done:
        print(line)
    main_conf = broker.conf_dir.parent / "mosquitto.conf"
    included = main_conf_includes(main_conf, broker.conf_dir)
    if included is False:
        print(f"warning: {main_conf} has no 'include_dir {broker.conf_dir}': add it")
    elif included is None:
        print(f"note: no {main_conf}; start mosquitto with a main file that has")
        print(f"      'include_dir {broker.conf_dir}' (Debian's stock file does)")
    host = "127.0.0.1" if address == "0.0.0.0" else address
    values = {
        "GRAMLINK_GATEWAY_LOCAL_URL": f"mqtt://{host}:{port}",
        "GRAMLINK_GATEWAY_LOCAL_USERNAME": ADMIN_USER,
    }
    if fresh:
        values["GRAMLINK_GATEWAY_LOCAL_PASSWORD"] = password
    if args.env_file is None:
        print("the gateway's settings for its local broker:")
        print("".join(f"{key}={value}\n" for key, value in values.items()), end="")
    else:
        try:
            args.env_file.parent.mkdir(parents=True, exist_ok=True)
            update_env_file(args.env_file, values)
        except OSError as exc:
            print(f"error: --env-file: {exc}", file=sys.stderr)
            return int(ExitCode.INTERNAL)
        print(f"set {', '.join(values)} in {args.env_file}")
    print("next: restart mosquitto (systemctl restart mosquitto), then the gateway")
    return int(ExitCode.OK)
