"""``gramlink gateway --centre ID --local-url URL --uplink-url URL ...``: the centre gateway."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from gateway.settings import add_arguments

    parser = subparsers.add_parser(
        "gateway",
        help="run a centre gateway (local broker -> durable outbox -> central broker)",
        description="Every option is also a GRAMLINK_GATEWAY_* setting; secrets "
        "(GRAMLINK_GATEWAY_PSEUDONYM_KEY, GRAMLINK_GATEWAY_CENTRE_KEY, *_PASSWORD) are "
        "settings only.",
    )
    add_arguments(parser)
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from gateway.__main__ import start

    return start(args)
