"""The uplink byte-rate cap: a token bucket on the compressed bytes the backlog drain sends.

``GRAMLINK_GATEWAY_UPLINK_MAX_BYTES_PER_S`` (off: 0) lets the centre's users keep
their internet while hours of data drain over the same thin link. The bucket
fills at ``rate`` bytes/s up to ``burst`` (one second's worth); a batch may
leave while the bucket is not in debt and is then charged its size (which may
put it in debt: a batch's size is only known once it is compressed), so over
any minute the drain sends ``rate`` bytes/s on average.
Priority-lane bytes are not charged (:mod:`gateway.uplink`).
"""

from __future__ import annotations

import time


class TokenBucket:
    def __init__(self, rate: float, burst: float | None = None, now: float | None = None) -> None:
        self.rate = rate
        self.burst = burst if burst is not None else rate
        self._tokens = 0.0  # start empty: no burst right after a (re)start
        self._at = time.monotonic() if now is None else now
        self.charged = 0  # bytes charged since start

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def _refill(self, now: float) -> None:
        self._tokens = min(self.burst, self._tokens + max(0.0, now - self._at) * self.rate)
        self._at = now

    def wait_s(self, now: float | None = None) -> float:
        """0 if a batch may leave now, else how long until it may."""
        if not self.enabled:
            return 0.0
        now = time.monotonic() if now is None else now
        self._refill(now)
        return 0.0 if self._tokens > -1.0 else -self._tokens / self.rate  # within a byte

    def charge(self, size: int, now: float | None = None) -> None:
        if not self.enabled:
            return
        self._refill(time.monotonic() if now is None else now)
        self._tokens -= size
        self.charged += size
