"""Firmware download for the ``ota`` command: stream, hash, report progress, switch.

Args: ``url`` (http/https), ``sha256`` (64 hex digits), ``version``. Progress
goes out as ``in_progress`` acks with ``progress_pct`` every 25 %; a download
error or a hash mismatch ends in ``failed`` and the device keeps its version;
on success the device switches ``fw``, re-publishes its birth ``state`` and
acknowledges ``done``. httpx errors are mapped to :class:`OtaError` here.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from typing import Final

import httpx

from contract.messages import Command
from firmware_sim.devices.base import Device
from firmware_sim.errors import OtaError

MAX_FIRMWARE_BYTES: Final = 64 * 1024 * 1024
PROGRESS_STEP_PCT: Final = 25
_SHA256: Final = re.compile(r"^[0-9a-fA-F]{64}$")


def download(url: str, timeout_s: float, progress: Callable[[float], None]) -> bytes:
    """The file at ``url`` (bounded size); OtaError on any transport or HTTP failure."""
    if not url.startswith(("http://", "https://")):
        raise OtaError("url must be http(s)")
    timeout = httpx.Timeout(timeout_s, connect=min(5.0, timeout_s))
    try:
        with httpx.Client(timeout=timeout) as http, http.stream("GET", url) as resp:
            resp.raise_for_status()
            total = int(resp.headers.get("content-length") or 0)
            if total > MAX_FIRMWARE_BYTES:
                raise OtaError(f"firmware too large: {total} bytes")
            chunks: list[bytes] = []
            got = 0
            next_pct = PROGRESS_STEP_PCT
            for chunk in resp.iter_bytes(64 * 1024):
                got += len(chunk)
                if got > MAX_FIRMWARE_BYTES:
                    raise OtaError("firmware too large")
                chunks.append(chunk)
                if total:
                    pct = got * 100.0 / total
                    while pct >= next_pct and next_pct < 100:
                        progress(float(next_pct))
                        next_pct += PROGRESS_STEP_PCT
            return b"".join(chunks)
    except httpx.HTTPStatusError as exc:
        raise OtaError(f"download failed: HTTP {exc.response.status_code}") from exc
    except httpx.HTTPError as exc:
        raise OtaError(f"download failed: {type(exc).__name__}: {exc}"[:300]) from exc


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
        blob = download(url, timeout_s, lambda pct: device.ack(cmd.id, "in_progress", None, pct))
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
