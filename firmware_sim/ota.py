"""Firmware download for the ``ota`` command: stream, hash, report progress, switch.

Args: ``url`` (http/https), ``sha256`` (64 hex digits), ``version``. The device
authenticates with its own login (HTTP Basic, ``Device.http_auth``); a cut
download resumes with a Range request. Progress
goes out as ``in_progress`` acks with ``progress_pct`` every 25 %; a download
error or a hash mismatch ends in ``failed`` and the device keeps its version;
on success the device switches ``fw``, re-publishes its birth ``state`` and
acknowledges ``done``. httpx errors are mapped to :class:`OtaError` here.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections.abc import Callable
from typing import Final

import httpx

from contract.firmware import CHUNK_BYTES, parse_content_range
from contract.messages import Command
from firmware_sim.devices.base import Device
from firmware_sim.errors import OtaError

log = logging.getLogger(__name__)
RESUME_ATTEMPTS: Final = 5
MAX_FIRMWARE_BYTES: Final = 64 * 1024 * 1024
PROGRESS_STEP_PCT: Final = 25
_SHA256: Final = re.compile(r"^[0-9a-fA-F]{64}$")


def download(
    url: str,
    timeout_s: float,
    progress: Callable[[float], None],
    auth: tuple[str, str] | None = None,
    attempts: int = RESUME_ATTEMPTS,
) -> bytes:
    """The file at ``url`` (bounded size); OtaError on any transport or HTTP failure.

    A connection cut in the middle is resumed with ``Range: bytes=N-`` (up to
    ``attempts`` connections): a ``206`` whose ``Content-Range`` starts at N
    continues the file, a ``200`` starts it again.
    """
    if not url.startswith(("http://", "https://")):
        raise OtaError("url must be http(s)")
    timeout = httpx.Timeout(timeout_s, connect=min(5.0, timeout_s))
    state = _Download(progress)
    last: Exception | None = None
    with httpx.Client(timeout=timeout, auth=auth) as http:
        for attempt in range(attempts):
            if attempt:
                time.sleep(min(2.0, 0.2 * attempt))
            try:
                state.fetch(http, url)
                return b"".join(state.chunks)
            except httpx.HTTPStatusError as exc:
                raise OtaError(f"download failed: HTTP {exc.response.status_code}") from exc
            except httpx.HTTPError as exc:  # cut: resume from what arrived
                last = exc
                log.info("event=ota_resume url=%s have=%d error=%s", url, state.got, exc)
    raise OtaError(f"download failed: {type(last).__name__}: {last}"[:300])


class _Download:
    """The bytes so far of one download, across resumed connections."""

    def __init__(self, progress: Callable[[float], None]) -> None:
        self.progress = progress
        self.chunks: list[bytes] = []
        self.got = 0
        self.total = 0
        self.next_pct = PROGRESS_STEP_PCT

    def fetch(self, http: httpx.Client, url: str) -> None:
        headers = {"Range": f"bytes={self.got}-"} if self.got else {}
        with http.stream("GET", url, headers=headers) as resp:
            resp.raise_for_status()
            span = parse_content_range(resp.headers.get("content-range"))
            if resp.status_code == 206 and span is not None and span[0] == self.got:
                self.total = span[1]
            else:  # the whole file again
                self.chunks, self.got = [], 0
                self.total = int(resp.headers.get("content-length") or 0)
            if self.total > MAX_FIRMWARE_BYTES:
                raise OtaError(f"firmware too large: {self.total} bytes")
            for chunk in resp.iter_bytes(CHUNK_BYTES):
                self.got += len(chunk)
                if self.got > MAX_FIRMWARE_BYTES:
                    raise OtaError("firmware too large")
                self.chunks.append(chunk)
                self._report()

    def _report(self) -> None:
        if not self.total:
            return
        pct = self.got * 100.0 / self.total
        while pct >= self.next_pct and self.next_pct < 100:
            self.progress(float(self.next_pct))
            self.next_pct += PROGRESS_STEP_PCT


def run_ota(device: Device, cmd: Command, now_ms: Callable[[], int], timeout_s: float) -> None:
    """Execute an ``ota`` command on ``device``, acknowledging every stage."""
    url, digest, version = cmd.args.get("url"), cmd.args.get("sha256"), cmd.args.get("version")
    if not isinstance(url, str) or not isinstance(version, str) or not version:
        device.ack(cmd.id, "failed", "ota needs url and version")
        return
    if not isinstance(digest, str) or not _SHA256.match(digest):
        device.ack(cmd.id, "failed", "ota needs sha256 (64 hex digits)")
        return
    device.ack(cmd.id, "accepted", f"downloading {version}")
    try:
        blob = download(
            url,
            timeout_s,
            lambda pct: device.ack(cmd.id, "in_progress", None, pct),
            auth=device.http_auth,
        )
    except OtaError as exc:
        device.ack(cmd.id, "failed", str(exc))
        return
    actual = hashlib.sha256(blob).hexdigest()
    if actual != digest.lower():
        device.ack(cmd.id, "failed", f"sha256 mismatch: got {actual[:12]}..., keeping {device.fw}")
        return
    device.ack(cmd.id, "in_progress", "verified, installing", 100.0)
    old = device.fw
    device.fw = version
    now = now_ms()
    device.publish_event(now, "fw_updated", {"from": old, "to": version})
    device.rebirth(now)
    device.ack(cmd.id, "done", f"fw={version}")
