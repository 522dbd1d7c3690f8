"""How a webhook request is signed, and how a receiver checks it.

The body is the notification's JSON in one canonical encoding (:func:`encode_body`),
sent byte for byte as signed. Each request carries::

    X-GramLink-Delivery:  <delivery id>     the same on every try: de-duplicate on it
    X-GramLink-Timestamp: <unix seconds>    when this try was signed
    X-GramLink-Signature: sha256=<hex>      HMAC-SHA256(secret, "<timestamp>." + body)

(the Stripe scheme: the timestamp inside the signed string lets a receiver
refuse a replayed request). :func:`verify` is the receiver's side, written out
in docs/alerts.md for receivers that are not Python.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

DELIVERY_HEADER = "X-GramLink-Delivery"
TIMESTAMP_HEADER = "X-GramLink-Timestamp"
SIGNATURE_HEADER = "X-GramLink-Signature"
EVENT_HEADER = "X-GramLink-Event"
SCHEME = "sha256="
TOLERANCE_S = 300  # a receiver should refuse a timestamp further than this from its clock


def encode_body(body: dict[str, Any]) -> bytes:
    """The exact bytes sent (and signed): compact, keys sorted, UTF-8."""
    return json.dumps(body, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode()


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The ``X-GramLink-Signature`` value of ``body`` signed at ``timestamp``."""
    signed = str(timestamp).encode() + b"." + body
    return SCHEME + hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def verify(
    secret: str,
    timestamp: str,
    signature_header: str,
    body: bytes,
    *,
    now: float,
    tolerance_s: float = TOLERANCE_S,
) -> bool:
    """Whether a request is genuine and fresh (the receiver's check)."""
    try:
        sent_at = int(timestamp)
    except ValueError:
        return False
    if abs(now - sent_at) > tolerance_s:
        return False
    return hmac.compare_digest(signature(secret, sent_at, body), signature_header)
