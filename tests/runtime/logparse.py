"""Reads a log line back the way a log shipper would: ``key=value`` tokens, values
bare or double-quoted with the escapes :func:`runtime.logs.escape` writes."""

from __future__ import annotations

import re

_TOKEN = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|[^ "]+)(?: |$)')
_ESCAPE = re.compile(r"\\(x[0-9a-f]{2}|u[0-9a-f]{4}|U[0-9a-f]{8}|[nrt\"\\])")
_NAMED = {"n": "\n", "r": "\r", "t": "\t", '"': '"', "\\": "\\"}


def unescape(value: str) -> str:
    if not value.startswith('"'):
        return value
    inner = value[1:-1]

    def one(match: re.Match[str]) -> str:
        code = match.group(1)
        return _NAMED.get(code) or chr(int(code[1:], 16))

    decoded = _ESCAPE.sub(one, inner)
    assert "\\" not in _ESCAPE.sub("", inner), f"unknown escape in {value!r}"
    return decoded


def tokens(body: str) -> list[tuple[str, str]]:
    """Every ``key=value`` of ``body``, values unescaped; fails on anything else."""
    found: list[tuple[str, str]] = []
    at = 0
    while at < len(body):
        match = _TOKEN.match(body, at)
        assert match, f"not key=value at {at}: {body[at:]!r}"
        found.append((match.group(1), unescape(match.group(2))))
        at = match.end()
    return found


def line_tokens(line: str) -> list[tuple[str, str]]:
    """The tokens of a whole line of :data:`runtime.logs.FORMAT` (after its date and time)."""
    date, time, body = line.split(" ", 2)
    assert re.fullmatch(r"\d{4}-\d\d-\d\d", date), line
    assert re.fullmatch(r"\d\d:\d\d:\d\d,\d{3}", time), line
    return tokens(body)
