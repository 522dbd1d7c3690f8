"""Structured log lines: ``event=... key=value ...`` (libraries log, ``app.run`` configures)."""

from __future__ import annotations

import logging
from typing import Any


def kv(event: str, **fields: Any) -> str:
    """One log line body: ``event=name k=v ...``; values with spaces are quoted."""
    parts = [f"event={event}"]
    for key, value in fields.items():
        text = str(value)
        if not text or any(ch in text for ch in ' "='):
            text = '"' + text.replace('"', "'") + '"'
        parts.append(f"{key}={text}")
    return " ".join(parts)


def configure(level: str) -> None:
    """Configure logging once for the gateway process."""
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s level=%(levelname)s logger=%(name)s %(message)s",
        force=True,
    )
