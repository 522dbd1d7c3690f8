"""Firmware downloads: what devices, the gateway and the API agree on.

A firmware file is fetched over HTTP with ``Range: bytes=N-`` so a download cut
by a bad link resumes where it stopped (``206 Partial Content`` with
``Content-Range: bytes N-M/TOTAL``). Files are named by their SHA-256 at the
gateway's local server (``/firmware/{sha256}``), so a cached copy is found by
the digest the ``ota`` command carries.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

SHA256_RE: Final = re.compile(r"^[0-9a-f]{64}$")
LOCAL_PATH: Final = "/firmware/{sha256}"
CHUNK_BYTES: Final = 64 * 1024
_RANGE: Final = re.compile(r"^bytes=(\d*)-(\d*)$")


class RangeError(ValueError):
    """A Range header that cannot be satisfied (answer 416)."""


@dataclass(frozen=True, slots=True)
class ByteRange:
    start: int
    end: int  # inclusive

    @property
    def length(self) -> int:
        return self.end - self.start + 1

    def content_range(self, total: int) -> str:
        return f"bytes {self.start}-{self.end}/{total}"


def parse_range(header: str | None, total: int) -> ByteRange | None:
    """The one range of ``header`` within a file of ``total`` bytes; None: the whole file.

    Only single ranges are served (``bytes=N-``, ``bytes=N-M``, ``bytes=-K``); a
    multi-range or malformed header is ignored (whole file), as RFC 9110 allows.
    """
    if not header:
        return None
    found = _RANGE.match(header.strip())
    if found is None:
        return None
    first, last = found.groups()
    if not first and not last:
        return None
    if not first:  # suffix: the last K bytes
        count = int(last)
        if count == 0:
            raise RangeError("empty suffix range")
        return ByteRange(max(0, total - count), total - 1)
    start = int(first)
    end = min(int(last), total - 1) if last else total - 1
    if start >= total or end < start:
        raise RangeError(f"range starts at {start} of {total} bytes")
    return ByteRange(start, end)


def parse_content_range(header: str | None) -> tuple[int, int] | None:
    """``bytes N-M/TOTAL`` -> (N, TOTAL); None if absent or unreadable."""
    found = re.match(r"^bytes (\d+)-(\d+)/(\d+)$", (header or "").strip())
    if found is None:
        return None
    return int(found.group(1)), int(found.group(3))


def local_path(sha256: str) -> str:
    if not SHA256_RE.match(sha256):
        raise ValueError("not a lower-case SHA-256 hex digest")
    return LOCAL_PATH.format(sha256=sha256)
