"""The demo: the local stack today; grows into the whole data path."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from gramlink.services import ServiceError
from gramlink.stack import DEFAULT_HOME, Stack


@dataclass(frozen=True)
class DemoOptions:
    home: Path = DEFAULT_HOME


def run_demo(options: DemoOptions) -> int:
    stack = Stack(options.home)
    try:
        print("starting the stack (mosquitto, influxdb) ...", flush=True)  # noqa: T201
        stack.up()
    except ServiceError as exc:
        print(f"error: {exc}", file=sys.stderr)  # noqa: T201
        return 1
    for name, info in stack.status().items():
        state = "up" if info["up"] else "DOWN"
        print(f"  {name:10} {state:4} {info['url']}  pid {info['pid']}")  # noqa: T201
    for name, where in stack.endpoints().items():
        print(f"  {name:12} {where}")  # noqa: T201
    print(f"stop it with: {sys.executable} -m gramlink stack down --home {options.home}")  # noqa: T201
    return 0
