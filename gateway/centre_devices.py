"""The centre's devices and their kinds, as the API's credential updates describe them.

A table ``centre_devices`` in the gateway's database: one row per (gateway id,
device) the API provisioned for this centre, with the device's kind. Written by
:class:`gateway.local_auth.LocalAuth` when it applies a ``DynsecUpdate``
(upsert, enable, disable: the device is known, with the update's kind and, when
the update names them, the registry's model and the device's provisioning time;
delete:
forgotten, its row kept with an empty kind so that the table is still "known"
when the last device goes), so its size is bounded by the centre's fleet. Read by
:class:`gateway.pseudonymize.Transformer` for every device message:

- no device known yet (no centre key, or no update received): nothing is
  checked, every device is taken as it comes;
- otherwise a message from a device not in the table is refused
  (``unknown_device``), and a reading or birth naming another kind than the
  device's (``kind_mismatch``).

:class:`gateway.clock_sanity.ClockSanity` reads the provisioning time
(:meth:`CentreDevices.provisioned_ms`): a reading from well before it is flagged.

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
# columns added after the table's first version: a store written before gets them
_ADDED: Final = {"model": "TEXT", "provisioned_ms": "INTEGER"}


class CentreDevices:
    """Device id -> kind (model, provisioning time) of one centre, in SQLite (WAL)."""

    def __init__(self, path: Path, gateway_id: str) -> None:
        self._gateway = gateway_id
        self._lock = threading.Lock()
        self._conn = open_store(path, _SCHEMA, STORE)
        with mapped(STORE):
            columns = {r[1] for r in self._conn.execute("PRAGMA table_info(centre_devices)")}
            for name, sql_type in _ADDED.items():
                if name not in columns:
                    self._conn.execute(f"ALTER TABLE centre_devices ADD COLUMN {name} {sql_type}")
            rows = self._conn.execute(
                "SELECT device, kind, model, provisioned_ms FROM centre_devices WHERE gateway = ?",
                (gateway_id,),
            ).fetchall()
        self._kinds: dict[str, str] = {device: kind for device, kind, _, _ in rows}
        self._models: dict[str, str] = {device: model for device, _, model, _ in rows if model}
        self._provisioned: dict[str, int] = {
            device: int(at) for device, kind, _, at in rows if kind and at is not None
        }

    def kind_of(self, device: str) -> str | None:
        """The device's registered kind; None if it is not one of the centre's devices."""
        return self._kinds.get(device) or None

    def model_of(self, device: str) -> str | None:
        """The device's model in the API's registry (None: not said)."""
        return self._models.get(device)

    def provisioned_ms(self, device: str) -> int | None:
        """When the API provisioned the device (epoch ms; None: not said, or not a device)."""
        return self._provisioned.get(device)

    @property
    def known(self) -> bool:
        """True once any update was applied: from then on, the table is the fleet."""
        return bool(self._kinds)

    def __len__(self) -> int:
        """How many devices the centre has (deleted ones not counted)."""
        return sum(1 for kind in self._kinds.values() if kind)

    def learn(
        self, device: str, kind: str, model: str | None = None, provisioned_ms: int | None = None
    ) -> None:
        with self._lock:
            model = model or self._models.get(device) if kind else None
            at = provisioned_ms or self._provisioned.get(device) if kind else None
            if (
                self._kinds.get(device) == kind
                and self._models.get(device) == model
                and self._provisioned.get(device) == at
            ):
                return
            self._write(
                "INSERT INTO centre_devices (gateway, device, kind, model, provisioned_ms)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT(gateway, device) DO UPDATE SET"
                " kind = excluded.kind, model = excluded.model,"
                " provisioned_ms = excluded.provisioned_ms",
                (self._gateway, device, kind, model, at),
            )
            kinds = dict(self._kinds)
            kinds[device] = kind
            self._kinds = kinds
            models = {d: m for d, m in self._models.items() if d != device}
            if model:
                models[device] = model
            self._models = models
            provisioned = {d: t for d, t in self._provisioned.items() if d != device}
            if at is not None:
                provisioned[device] = at
            self._provisioned = provisioned

    def forget(self, device: str) -> None:
        self.learn(device, "")  # a tombstone: no longer a device of the centre

    def _write(self, sql: str, params: tuple[str | int | None, ...]) -> None:
        with mapped(STORE):
            self._conn.execute(sql, params)

    def close(self) -> None:
        with self._lock:
            self._conn.close()
