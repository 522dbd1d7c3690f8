"""``gramlink demo``: bring the local system up and say what runs where."""

from __future__ import annotations

import argparse
from pathlib import Path

from gramlink.demo import DemoOptions, run_demo
from gramlink.stack import DEFAULT_HOME


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser("demo", help="run the whole system locally")
    parser.add_argument("--home", type=Path, default=DEFAULT_HOME, help="state directory")
    parser.set_defaults(func=lambda args: run_demo(DemoOptions(home=args.home)))
