"""``python -m gateway``: parse options, load settings, ``app.run``."""

from __future__ import annotations

import argparse
import sys

from gateway.errors import ConfigError, StoreError
from gateway.settings import ENV_PREFIX, add_arguments, load
from mqttlink.endpoint import TlsFileError
from runtime.exits import ExitCode
from runtime.logs import configure


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gateway", description="GramLink centre gateway")
    add_arguments(parser)
    return start(parser.parse_args(argv))


def start(args: argparse.Namespace) -> int:
    """Shared by ``gramlink gateway``: one line on stderr and an exit code of
    :class:`runtime.exits.ExitCode` (2 for a bad setting or TLS file)."""
    try:
        settings = load(args)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)  # noqa: T201
        return ExitCode.CONFIG
    configure(settings.log_level)
    from gateway.app import run

    try:
        return run(settings)
    except TlsFileError as exc:
        print(f"error: setting {exc}", file=sys.stderr)  # noqa: T201
        return ExitCode.CONFIG
    except StoreError as exc:
        print(f"error: {exc} (check {ENV_PREFIX}DATA_DIR)", file=sys.stderr)  # noqa: T201
        return ExitCode.CONFIG


if __name__ == "__main__":
    sys.exit(main())
