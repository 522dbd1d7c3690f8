"""The gateway's firmware cache: each file fetched once over the uplink for the centre.

An ``ota`` command relayed to a device of the centre names the file's SHA-256
and where the API serves it; the downlink rewrites its ``url`` to this
gateway's local server (:mod:`gateway.firmware_server`) and remembers the
origin (``{sha}.src``). The first device to ask (or the prefetch started at
relay time) makes the gateway download the file from the API with its own
login (HTTP Basic, resumed with Range when the uplink cuts), check the SHA-256,
and keep it as ``{sha}.bin``; every other device of the centre gets that copy.
One fetch per digest at a time (single flight). The cache is bounded by
``firmware_cache_bytes``: the least recently used files go first.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from pathlib import Path

import httpx

from contract.firmware import CHUNK_BYTES, SHA256_RE, parse_content_range
from runtime.logs import kv

log = logging.getLogger(__name__)
RESUME_ATTEMPTS = 5


class CacheError(RuntimeError):
    """The file could not be had (unknown digest, upstream error, hash mismatch)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class FirmwareCache:
    def __init__(
        self,
        root: Path,
        max_bytes: int,
        auth: tuple[str, str] | None,
        timeout_s: float = 30.0,
    ) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self.auth = auth
        self.timeout_s = timeout_s
        self.fetched = 0  # files downloaded over the uplink
        self.fetched_bytes = 0
        self._lock = threading.Lock()
        self._flights: dict[str, threading.Lock] = {}
        root.mkdir(parents=True, exist_ok=True)

    def remember(self, sha256: str, origin: str) -> None:
        """Where the API serves ``sha256`` (from a relayed ``ota`` command)."""
        self._check(sha256)
        src = self.root / f"{sha256}.src"
        if not src.exists() or src.read_text() != origin:
            src.write_text(origin)

    def prefetch(self, sha256: str) -> None:
        threading.Thread(target=self._quiet_get, args=(sha256,), daemon=True).start()

    def _quiet_get(self, sha256: str) -> None:
        try:
            self.get(sha256)
        except CacheError as exc:
            log.warning(kv("firmware_prefetch_failed", sha256=sha256[:12], error=exc))

    def get(self, sha256: str) -> Path:
        """The cached file (fetched now if need be); CacheError otherwise."""
        self._check(sha256)
        final = self.root / f"{sha256}.bin"
        with self._lock:
            flight = self._flights.setdefault(sha256, threading.Lock())
        with flight:
            if final.exists():
                os.utime(final)  # recently used
                return final
            self._fetch(sha256, final)
            return final

    @staticmethod
    def _check(sha256: str) -> None:
        if not SHA256_RE.match(sha256):
            raise CacheError("not a SHA-256 digest", 404)

    def _fetch(self, sha256: str, final: Path) -> None:
        src = self.root / f"{sha256}.src"
        if not src.exists():
            raise CacheError("no ota command named this file", 404)
        url = src.read_text().strip()
        part = final.with_suffix(".part")
        part.unlink(missing_ok=True)
        timeout = httpx.Timeout(self.timeout_s, connect=min(5.0, self.timeout_s))
        last: Exception | None = None
        with httpx.Client(timeout=timeout, auth=self.auth) as http:
            for attempt in range(RESUME_ATTEMPTS):
                if attempt:
                    time.sleep(min(2.0, 0.2 * attempt))
                try:
                    self._download(http, url, part)
                    break
                except httpx.HTTPStatusError as exc:
                    part.unlink(missing_ok=True)
                    raise CacheError(f"the API answered {exc.response.status_code}", 502) from exc
                except httpx.HTTPError as exc:
                    last = exc
            else:
                raise CacheError(f"uplink download failed: {last}"[:300], 502)
        digest = hashlib.sha256()
        with part.open("rb") as data:
            while chunk := data.read(CHUNK_BYTES):
                digest.update(chunk)
        if digest.hexdigest() != sha256:
            part.unlink(missing_ok=True)
            log.warning(kv("firmware_hash_mismatch", sha256=sha256[:12], url=url))
            raise CacheError("the file from the API does not match its SHA-256", 502)
        size = part.stat().st_size
        if size > self.max_bytes:
            part.unlink(missing_ok=True)
            raise CacheError(f"{size} bytes exceed GRAMLINK_GATEWAY_FIRMWARE_CACHE_BYTES", 507)
        self._make_room(size)
        part.replace(final)
        self.fetched += 1
        self.fetched_bytes += size
        log.info(kv("firmware_cached", sha256=sha256[:12], bytes=size))

    def _download(self, http: httpx.Client, url: str, part: Path) -> None:
        have = part.stat().st_size if part.exists() else 0
        headers = {"Range": f"bytes={have}-"} if have else {}
        with http.stream("GET", url, headers=headers) as resp:
            resp.raise_for_status()
            span = parse_content_range(resp.headers.get("content-range"))
            mode = "ab" if resp.status_code == 206 and span and span[0] == have else "wb"
            with part.open(mode) as out:
                for chunk in resp.iter_bytes(CHUNK_BYTES):
                    out.write(chunk)

    def _make_room(self, incoming: int) -> None:
        files = sorted(self.root.glob("*.bin"), key=lambda p: p.stat().st_mtime)
        used = sum(p.stat().st_size for p in files)
        while files and used + incoming > self.max_bytes:
            victim = files.pop(0)
            used -= victim.stat().st_size
            victim.unlink(missing_ok=True)
            log.info(kv("firmware_evicted", file=victim.name[:12]))
