"""The firmware file store: one file per firmware id under ``GRAMLINK_API_FIRMWARE_DIR``.

Uploads are streamed to a temporary file while SHA-256 and size are computed,
then renamed into place, so a half-written upload never has a final name.
``served`` counts the downloads answered per firmware id (the measure of how
often the uplink carried a file).
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from contract.firmware import CHUNK_BYTES, ByteRange


class FirmwareTooLarge(ValueError):
    pass


class FirmwareStore:
    def __init__(self, root: Path, max_bytes: int) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self.served: Counter[int] = Counter()
        self._lock = threading.Lock()

    def path(self, firmware_id: int) -> Path:
        return self.root / f"{firmware_id}.bin"

    def save(self, firmware_id: int, source: BinaryIO) -> tuple[str, int]:
        """Store the upload; (sha256, size). FirmwareTooLarge past ``max_bytes``."""
        self.root.mkdir(parents=True, exist_ok=True)
        final = self.path(firmware_id)
        partial = final.with_suffix(".part")
        digest = hashlib.sha256()
        size = 0
        try:
            with partial.open("wb") as out:
                while chunk := source.read(CHUNK_BYTES):
                    size += len(chunk)
                    if size > self.max_bytes:
                        raise FirmwareTooLarge(f"firmware larger than {self.max_bytes} bytes")
                    digest.update(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            partial.replace(final)
        finally:
            partial.unlink(missing_ok=True)
        return digest.hexdigest(), size

    def delete(self, firmware_id: int) -> None:
        self.path(firmware_id).unlink(missing_ok=True)

    def size(self, firmware_id: int) -> int:
        return self.path(firmware_id).stat().st_size

    def read(self, firmware_id: int, part: ByteRange) -> Iterator[bytes]:
        """The bytes of ``part``, in chunks (counted once per download started)."""
        with self._lock:
            self.served[firmware_id] += 1
        return self._chunks(self.path(firmware_id), part)

    @staticmethod
    def _chunks(path: Path, part: ByteRange) -> Iterator[bytes]:
        with path.open("rb") as source:
            source.seek(part.start)
            left = part.length
            while left > 0:
                chunk = source.read(min(CHUNK_BYTES, left))
                if not chunk:
                    return
                left -= len(chunk)
                yield chunk
