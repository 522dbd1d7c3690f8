"""What a dashboard must be to load in the pinned Grafana major (used by the tests and
by ``gramlink dashboards build --check``).

- it reads back through the SDK's models unchanged (so every option is one the
  pinned major has; an unknown option is dropped by the models and shows as a
  difference), except the InfluxDB annotation keys the SDK does not model;
- every panel type is one the SDK's plugin registry knows for that major;
- every query names the one datasource.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

from grafana_foundation_sdk.cog import runtime
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.cog.plugins import register_default_plugins
from grafana_foundation_sdk.models.dashboard import Dashboard

from dashboards import datasource
from dashboards.board import UNMODELLED_ANNOTATION_KEYS

LAYOUT_TYPES = frozenset({"row"})


def panel_types() -> frozenset[str]:
    """Panel types of the pinned Grafana major (the SDK's panel plugins)."""
    register_default_plugins()
    return frozenset(runtime.Runtime().panelcfg_variants) | LAYOUT_TYPES


def read_back(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` → SDK model → JSON."""
    register_default_plugins()
    back: dict[str, Any] = json.loads(json.dumps(Dashboard.from_json(data), cls=JSONEncoder))
    return back


def without_unmodelled(data: dict[str, Any]) -> dict[str, Any]:
    data = copy.deepcopy(data)
    for annotation in data.get("annotations", {}).get("list", []):
        for key in UNMODELLED_ANNOTATION_KEYS:
            annotation.pop(key, None)
    return data


def differences(a: object, b: object, path: str = "") -> Iterator[str]:
    """Where two JSON values differ, as ``/path: a != b`` lines."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            if key not in a or key not in b:
                yield f"{path}/{key}: only in {'the original' if key in a else 'the read-back'}"
            else:
                yield from differences(a[key], b[key], f"{path}/{key}")
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            yield from differences(x, y, f"{path}[{i}]")
    elif a != b:
        yield f"{path}: {str(a)[:60]!r} != {str(b)[:60]!r}"


def panels(data: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in data.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def problems(data: dict[str, Any]) -> list[str]:
    """Everything that keeps ``data`` from loading as intended in the pinned major."""
    found = list(differences(without_unmodelled(data), read_back(data)))
    known = panel_types()
    for panel in panels(data):
        title = panel.get("title", "?")
        if panel.get("type") not in known:
            found.append(f"panel {title!r}: type {panel.get('type')!r} not in Grafana's")
        for target in panel.get("targets", []):
            if target.get("datasource", {}).get("uid") != datasource.UID:
                found.append(f"panel {title!r}: a target not on {datasource.UID}")
    return found
