"""``gramlink ingest``: one ingest worker (MQTT shared subscription to InfluxDB)."""

from __future__ import annotations

import argparse

from ingest.__main__ import start
from ingest.settings import add_options


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "ingest",
        help="run an ingest worker: MQTT to InfluxDB, acknowledged after the write",
        description="Every option is also a GRAMLINK_INGEST_* environment variable.",
    )
    add_options(parser)
    parser.set_defaults(func=start)
