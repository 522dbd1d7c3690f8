"""The centre's devices and their kinds, as the API's credential updates describe them.

A table ``centre_devices`` in the gateway's database: one row per (gateway id,
device) the API provisioned for this centre, with the device's kind. Written by
:class:`gateway.local_auth.LocalAuth` when it applies a ``DynsecUpdate``
(upsert, enable, disable: the device is known, with the update's kind and, when
the update names it, the registry's model; delete:
forgotten, its row kept with an empty kind so that the table is still "known"
when the last device goes), so its size is bounded by the centre's fleet. Read by
:class:`gateway.pseudonymize.Transformer` for every device message:

- no device known yet (no centre key, or no update received): nothing is
  checked, every device is taken as it comes;
- otherwise a message from a device not in the table is refused
  (``unknown_device``), and a reading or birth naming another kind than the
  device's (``kind_mismatch``).

Threads: written by the dynsec thread, read by the ingest thread. Reads take no
lock: they look up one key in a dict that writers replace under the lock.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Final

from gateway.sqlite import mapped, open_store

STORE: Final = "centre_devices"
_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS centre_devices (
    gateway TEXT NOT NULL,
    device TEXT NOT NULL,
    kind TEXT NOT NULL,
    PRIMARY KEY (gateway, device)
);
"""
_MODEL_COLUMN: Final = "ALTER TABLE centre_devices ADD COLUMN model TEXT"


class CentreDevices:
    """Device id -> kind of one centre, persisted in SQLite (WAL)."""

    def __init__(self, path: Path, gateway_id: str) -> None:
        self._gateway = gateway_id
        self._lock = threading.Lock()
        self._conn = open_store(path, _SCHEMA, STORE)
        with mapped(STORE):
            columns = {r[1] for r in self._conn.execute("PRAGMA table_info(centre_devices)")}
            if "model" not in columns:  # a store written before models were kept
                self._conn.execute(_MODEL_COLUMN)
            rows = self._conn.execute(
                "SELECT device, kind, model FROM centre_devices WHERE gateway = ?", (gateway_id,)
            ).fetchall()
        self._kinds: dict[str, str] = {device: kind for device, kind, _ in rows}
        self._models: dict[str, str] = {device: model for device, _, model in rows if model}

    def kind_of(self, device: str) -> str | None:
        """The device's registered kind; None if it is not one of the centre's devices."""
        return self._kinds.get(device) or None

    def model_of(self, device: str) -> str | None:
        """The device's model in the API's registry (None: not said)."""
        return self._models.get(device)

    @property
    def known(self) -> bool:
        """True once any update was applied: from then on, the table is the fleet."""
        return bool(self._kinds)

    def __len__(self) -> int:
        """How many devices the centre has (deleted ones not counted)."""
        return sum(1 for kind in self._kinds.values() if kind)

    def learn(self, device: str, kind: str, model: str | None = None) -> None:
        with self._lock:
            model = model or self._models.get(device) if kind else None
            if self._kinds.get(device) == kind and self._models.get(device) == model:
                return
            self._write(
                "INSERT INTO centre_devices (gateway, device, kind, model) VALUES (?, ?, ?, ?)"
                " ON CONFLICT(gateway, device) DO UPDATE SET kind = excluded.kind,"
                " model = excluded.model",
                (self._gateway, device, kind, model),
            )
            kinds = dict(self._kinds)
            kinds[device] = kind
            self._kinds = kinds
            models = {d: m for d, m in self._models.items() if d != device}
            if model:
                models[device] = model
            self._models = models

    def forget(self, device: str) -> None:
        self.learn(device, "")  # a tombstone: no longer a device of the centre

    def _write(self, sql: str, params: tuple[str | None, ...]) -> None:
        with mapped(STORE):
            self._conn.execute(sql, params)

    def close(self) -> None:
        with self._lock:
            self._conn.close()
