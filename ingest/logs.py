"""Structured log lines: ``event key=value ...``; configured once by the process (``app.run``)."""

from __future__ import annotations

import logging
import sys


def kv(event: str, **fields: object) -> str:
    parts = [event]
    for key, value in fields.items():
        text = str(value)
        if " " in text or '"' in text or not text:
            text = '"' + text.replace('"', "'") + '"'
        parts.append(f"{key}={text}")
    return " ".join(parts)


def configure(level: str) -> None:
    logging.basicConfig(
        stream=sys.stderr,
        level=level.upper(),
        format="%(asctime)s level=%(levelname)s logger=%(name)s %(message)s",
        force=True,
    )
