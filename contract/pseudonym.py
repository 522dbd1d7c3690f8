"""Patient pseudonyms: HMAC-SHA256 of the local patient id under a per-centre key."""

from __future__ import annotations

import hashlib
import hmac


def pseudonymize(centre_key: bytes, patient_id: str) -> str:
    """The 64-hex-digit pseudonym that replaces ``patient_id`` before it leaves the centre."""
    if len(centre_key) < 16:
        raise ValueError("a centre key needs at least 16 bytes")
    return hmac.new(centre_key, patient_id.encode(), hashlib.sha256).hexdigest()
