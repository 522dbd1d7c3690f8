"""Patient ids: the pseudonym that replaces them, and their redaction from excerpts.

:func:`pseudonymize` is what the gateway sends upstream instead of a local
``patient_id``. :func:`redact_patient_ids` is what every quarantine (the
gateway's and ingest's) and every log line applies to a payload before keeping
any of it: no excerpt anywhere holds a raw ``patient_id``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from typing import Any, Final

REDACTED: Final = "<redacted>"
PATIENT_KEY: Final = "patient_id"
# A JSON string (possibly cut short by the end of the text) or any other token.
_KEY: Final = re.compile(rb'"((?:[^"\\]|\\.)*)"\s*:\s*')
_VALUE: Final = re.compile(rb'"(?:[^"\\]|\\.)*(?:"|\\?\Z)|[^,}\]\s]*')


def pseudonymize(centre_key: bytes, patient_id: str) -> str:
    """The 64-hex-digit pseudonym that replaces ``patient_id`` before it leaves the centre."""
    if len(centre_key) < 16:
        raise ValueError("a centre key needs at least 16 bytes")
    return hmac.new(centre_key, patient_id.encode(), hashlib.sha256).hexdigest()


def redact_patient_ids(payload: bytes) -> bytes:
    """``payload`` with the value of every ``patient_id`` key replaced by ``"<redacted>"``.

    Any value (string, number, object), at any depth. A payload that parses as
    JSON is rewritten from its parsed form (so escapes such as
    ``"patient\\u005fid"`` are seen through) and left byte-for-byte alone when
    it holds no such key. Anything else (cut short, broken, not JSON) is
    scanned as text: a ``"patient_id": ...`` value is replaced up to its end,
    or up to the end of the text when it is cut short.
    """
    if PATIENT_KEY.encode() not in payload and b"\\" not in payload:
        return payload  # fast path: the key cannot be there, not even escaped
    try:
        value = json.loads(payload)
    except (ValueError, RecursionError):
        return _redact_text(payload)
    if not _holds_key(value):
        return payload
    return json.dumps(_scrub(value), separators=(",", ":"), ensure_ascii=False).encode()


def _holds_key(value: Any) -> bool:
    if isinstance(value, dict):
        return PATIENT_KEY in value or any(_holds_key(v) for v in value.values())
    if isinstance(value, list):
        return any(_holds_key(v) for v in value)
    return False


def _scrub(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: REDACTED if k == PATIENT_KEY else _scrub(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v) for v in value]
    return value


def _is_patient_key(raw: bytes) -> bool:
    if raw == PATIENT_KEY.encode():
        return True
    if b"\\" not in raw:
        return False
    try:
        return bool(json.loads(b'"' + raw + b'"') == PATIENT_KEY)
    except ValueError:
        return False


def _redact_text(data: bytes) -> bytes:
    out: list[bytes] = []
    pos = 0
    for key in _KEY.finditer(data):
        if key.start() < pos or not _is_patient_key(key.group(1)):
            continue
        value = _VALUE.match(data, key.end())
        end = value.end() if value is not None else key.end()
        out += [data[pos : key.end()], b'"' + REDACTED.encode() + b'"']
        pos = end
    out.append(data[pos:])
    return b"".join(out)


SCAN_BYTES: Final = 16 * 1024  # a device message's size bound (contract.codec.MAX_MESSAGE_BYTES)


def redacted_excerpt(payload: bytes, limit: int) -> bytes:
    """The first ``limit`` bytes of ``payload``, patient ids redacted (scans <= 16 KiB)."""
    return redact_patient_ids(payload[: max(limit, SCAN_BYTES)])[:limit]
