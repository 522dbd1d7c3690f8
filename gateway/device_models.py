"""The model of each of the centre's devices, stamped into every envelope record.

Ingest tags a stored reading with the record's model (``BatchRecord.m``), so the
stored series of a reading depends only on the reading: a batch sent again after
an ingest restart lands on the same points. Where the model comes from, first
match wins:

1. the API's registry, as its credential updates say it (``DynsecUpdate.model``,
   kept by :class:`gateway.centre_devices.CentreDevices`; only with a centre key);
2. the model of the device's last birth (``state``) the gateway relayed, kept
   here in the table ``device_models`` (one row per device: bounded by the fleet);
3. none: the record carries no model, ingest stores ``model=unknown``.

Threads: births are learnt on the ingest thread, models read on the uplink
thread. Reads take no lock: they look up one key in a dict writers replace.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Final, Protocol

from gateway.sqlite import mapped, open_store

STORE: Final = "device_models"
_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS device_models (
    gateway TEXT NOT NULL,
    device TEXT NOT NULL,
    model TEXT NOT NULL,
    PRIMARY KEY (gateway, device)
);
"""


class Registry(Protocol):
    def model_of(self, device: str) -> str | None: ...


class DeviceModels:
    """Device id -> model: the registry's, else the last birth's (persisted)."""

    def __init__(self, path: Path, gateway_id: str, registry: Registry | None = None) -> None:
        self._gateway = gateway_id
        self._registry = registry
        self._lock = threading.Lock()
        self._conn = open_store(path, _SCHEMA, STORE)
        with mapped(STORE):
            rows = self._conn.execute(
                "SELECT device, model FROM device_models WHERE gateway = ?", (gateway_id,)
            ).fetchall()
        self._births: dict[str, str] = dict(rows)

    def model_of(self, device: str) -> str | None:
        if self._registry is not None:
            model = self._registry.model_of(device)
            if model:
                return model
        return self._births.get(device)

    def born(self, device: str, model: str | None) -> None:
        """A birth the gateway relays names the device's model."""
        if not model or self._births.get(device) == model:
            return
        with self._lock:
            with mapped(STORE):
                self._conn.execute(
                    "INSERT INTO device_models (gateway, device, model) VALUES (?, ?, ?)"
                    " ON CONFLICT(gateway, device) DO UPDATE SET model = excluded.model",
                    (self._gateway, device, model),
                )
            births = dict(self._births)
            births[device] = model
            self._births = births

    def close(self) -> None:
        with self._lock:
            self._conn.close()
