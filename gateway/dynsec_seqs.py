"""The newest applied credential update (``seq``) per device, kept on disk.

A table ``dynsec_applied`` in the gateway's database: one row per (gateway id,
device) ever updated, so its size is bounded by the centre's fleet. It lets
:class:`gateway.local_auth.LocalAuth` skip an update that arrives after a newer
one for the same device, even across a restart (a late redelivery never rolls a
password back). Keyed by gateway id too: a replacement gateway record starts
its sequence at 1 again. No secret is stored here, only ids and counters.

Used from the dynsec worker thread only (reads are served from memory).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Final

from gateway.sqlite import mapped, open_store

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS dynsec_applied (
    gateway TEXT NOT NULL,
    device TEXT NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (gateway, device)
);
CREATE TABLE IF NOT EXISTS dynsec_versions (
    gateway TEXT NOT NULL,
    device TEXT NOT NULL,
    credential_version INTEGER NOT NULL,
    PRIMARY KEY (gateway, device)
);
"""


class AppliedSeqs:
    """A :class:`gateway.local_auth.SeqStore` persisted in SQLite (WAL)."""

    def __init__(self, path: Path, gateway_id: str) -> None:
        self._gateway = gateway_id
        self._lock = threading.Lock()
        self._conn = open_store(path, _SCHEMA, "dynsec_applied")
        with mapped("dynsec_applied"):
            rows = self._conn.execute(
                "SELECT device, seq FROM dynsec_applied WHERE gateway = ?", (gateway_id,)
            ).fetchall()
            versions = self._conn.execute(
                "SELECT device, credential_version FROM dynsec_versions WHERE gateway = ?",
                (gateway_id,),
            ).fetchall()
        self._seqs: dict[str, int] = {device: int(seq) for device, seq in rows}
        self._versions: dict[str, int] = {device: int(v) for device, v in versions}

    def get(self, device: str) -> int:
        with self._lock:
            return self._seqs.get(device, -1)

    def set(self, device: str, seq: int) -> None:
        with self._lock:
            with mapped("dynsec_applied"):
                self._conn.execute(
                    "INSERT INTO dynsec_applied (gateway, device, seq) VALUES (?, ?, ?)"
                    " ON CONFLICT(gateway, device) DO UPDATE SET seq = excluded.seq",
                    (self._gateway, device, seq),
                )
            self._seqs[device] = seq

    def version(self, device: str) -> int:
        with self._lock:
            return self._versions.get(device, -1)

    def set_version(self, device: str, credential_version: int) -> None:
        with self._lock:
            if self._versions.get(device) == credential_version:
                return
            with mapped("dynsec_versions"):
                self._conn.execute(
                    "INSERT INTO dynsec_versions (gateway, device, credential_version)"
                    " VALUES (?, ?, ?) ON CONFLICT(gateway, device)"
                    " DO UPDATE SET credential_version = excluded.credential_version",
                    (self._gateway, device, credential_version),
                )
            self._versions[device] = credential_version

    def close(self) -> None:
        with self._lock:
            self._conn.close()
