"""``python -m ingest``: same as ``gramlink ingest``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ingest.errors import ConfigError
from ingest.settings import add_options, from_args
from mqttlink.endpoint import TlsFileError
from runtime.exits import ExitCode
from runtime.logs import configure


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ingest", description=__doc__)
    add_options(parser)
    args = parser.parse_args(argv)
    return start(args)


def start(args: argparse.Namespace) -> int:
    """Load the settings (one line and exit 2 when wrong) and run the worker."""
    try:
        settings = from_args(args)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)  # noqa: T201
        return 2
    configure(settings.log_level)
    from ingest.app import run

    try:
        return run(settings)
    except TlsFileError as exc:  # a CA, certificate or key file named by a setting
        print(f"error: setting {exc}", file=sys.stderr)  # noqa: T201
        return int(ExitCode.CONFIG)
    except ConfigError as exc:  # found at start: a state directory, a metrics port
        print(f"error: {exc}", file=sys.stderr)  # noqa: T201
        return int(ExitCode.CONFIG)


if __name__ == "__main__":
    sys.exit(main())
