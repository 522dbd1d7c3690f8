"""The ``gramlink`` command: parses options and hands over to a subcommand module."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence

import gramlink.commands


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser with ``command`` alone when it names one (a process imports only what
    it runs: a centre's gateway neither the simulator nor the dashboards), else with
    every command (``gramlink --help``, a typo)."""
    parser = argparse.ArgumentParser(
        prog="gramlink", description="Telemetry and device management for rural centres"
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    names = sorted(m.name for m in pkgutil.iter_modules(gramlink.commands.__path__))
    module_name = None if command is None else command.replace("-", "_")  # centre-broker
    for name in [module_name] if module_name in names else names:
        module = importlib.import_module(f"gramlink.commands.{name}")
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else list(argv)
    command = arguments[0] if arguments and not arguments[0].startswith("-") else None
    args = build_parser(command).parse_args(arguments)
    try:
        code: int = args.func(args)
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
