"""Deterministic random streams: one per device (fleet seed + device id), never global."""

from __future__ import annotations

import hashlib
import random


def derive_seed(*parts: object) -> int:
    """A 64-bit seed from any parts; the same parts always give the same seed."""
    digest = hashlib.sha256("|".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "big")


def stream(*parts: object) -> random.Random:
    """An independent random stream for ``parts`` (e.g. fleet seed, device id, day)."""
    return random.Random(derive_seed(*parts))
