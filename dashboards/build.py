"""Every dashboard, rendered to the JSON that is committed under ``dashboards/generated/``.

``render(name)`` is the one serialisation (sorted keys, 2-space indent), used by
``gramlink dashboards build``, by the push and by the test that compares the
generated files with the committed ones.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

from grafana_foundation_sdk.builders.dashboard import Dashboard
from grafana_foundation_sdk.cog.encoder import JSONEncoder

from dashboards import centre, connectivity, fleet, pipeline, power

GENERATED: Final = Path(__file__).resolve().parent / "generated"
DASHBOARDS: Final[dict[str, Callable[[], Dashboard]]] = {
    "fleet": fleet.dashboard,
    "centre": centre.dashboard,
    "power": power.dashboard,
    "connectivity": connectivity.dashboard,
    "pipeline": pipeline.dashboard,
}


def model(name: str) -> dict[str, Any]:
    """The dashboard as plain JSON data (what Grafana stores)."""
    data: dict[str, Any] = json.loads(json.dumps(DASHBOARDS[name]().build(), cls=JSONEncoder))
    return data


def render(name: str) -> str:
    return json.dumps(model(name), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def write(directory: Path = GENERATED) -> list[tuple[str, bool]]:
    """Write every dashboard's JSON; (file name, changed) for each."""
    directory.mkdir(parents=True, exist_ok=True)
    result = []
    for name in DASHBOARDS:
        path = directory / f"{name}.json"
        text = render(name)
        changed = not path.exists() or path.read_text() != text
        if changed:
            path.write_text(text)
        result.append((path.name, changed))
    return result
