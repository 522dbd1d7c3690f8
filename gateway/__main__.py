"""``python -m gateway``: parse options, load settings, ``app.run``."""

from __future__ import annotations

import argparse
import sys

from gateway.errors import ConfigError, StoreError
from gateway.settings import add_arguments, load
from runtime.exits import ExitCode
from runtime.logs import configure


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gateway", description="GramLink centre gateway")
    add_arguments(parser)
    return start(parser.parse_args(argv))


def start(args: argparse.Namespace) -> int:
    """Shared by ``gramlink gateway``: one line and exit code 2 for bad config."""
    try:
        settings = load(args)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)  # noqa: T201
        return ExitCode.CONFIG
    configure(settings.log_level)
    from gateway.app import run

    try:
        return run(settings)
    except StoreError as exc:
        print(f"error: {exc}", file=sys.stderr)  # noqa: T201
        return ExitCode.INTERNAL


if __name__ == "__main__":
    sys.exit(main())
