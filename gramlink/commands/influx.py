"""``gramlink influx init``: database/buckets, 90-day raw data, hourly roll-ups kept 5 years."""

from __future__ import annotations

import argparse
import sys

from ingest.errors import IngestError
from ingest.settings import add_options, from_args
from runtime.logs import configure


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "influx",
        help="prepare InfluxDB for GramLink (idempotent)",
        description="Uses the ingest settings (GRAMLINK_INGEST_*): influx url, writer, "
        "database/bucket and credentials.",
    )
    parser.add_argument("action", choices=["init"])
    add_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ingest.retention import init

    configure("warning")  # the changes are printed below
    try:
        changed = init(from_args(args))
    except IngestError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for line in changed:
        print(line)
    print("influx init: " + ("done" if changed else "nothing to change"))
    return 0
