"""Device credentials from the provisioning API's CSV export.

Header ``centre_id,device_id,kind,model,username,password``; one row per device.
A missing file, a wrong header or an invalid id is a :class:`ConfigError`.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Final

from contract.topics import TopicError, check_id
from firmware_sim.errors import ConfigError

HEADER: Final = ("centre_id", "device_id", "kind", "model", "username", "password")


def load_credentials(path: Path) -> dict[str, tuple[str, str]]:
    """device id -> (username, password)."""
    try:
        with path.open(newline="") as handle:
            reader = csv.DictReader(handle)
            if tuple(reader.fieldnames or ()) != HEADER:
                raise ConfigError(f"credentials file {path}: header must be {','.join(HEADER)}")
            out: dict[str, tuple[str, str]] = {}
            for row in reader:
                try:
                    device = check_id(row["device_id"], "device")
                except TopicError as exc:
                    raise ConfigError(
                        f"credentials file {path} line {reader.line_num}: {exc}"
                    ) from None
                if not row["username"] or not row["password"]:
                    raise ConfigError(
                        f"credentials file {path} line {reader.line_num}: empty login"
                    )
                out[device] = (row["username"], row["password"])
            return out
    except OSError as exc:
        raise ConfigError(f"credentials file {path}: {exc.strerror}") from None
