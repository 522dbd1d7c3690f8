"""Device credentials from the provisioning API's CSV export.

Header ``centre_id,device_id,kind,model,username,password`` and, in sheets of
the API since issue #15, a last column ``centre_key`` (filled on gateway rows
only; the simulator ignores it). One row per device. A missing file, a wrong
header or an invalid id is a :class:`ConfigError`. The sheet is also the
fleet's roster (:func:`load_sheet`): ``gramlink sim --credentials`` runs
exactly the devices it lists, by their kinds.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Final, NamedTuple

from contract.topics import TopicError, check_id
from firmware_sim.errors import ConfigError

HEADER: Final = ("centre_id", "device_id", "kind", "model", "username", "password")
HEADERS: Final = (HEADER, (*HEADER, "centre_key"))


class SheetRow(NamedTuple):
    centre: str
    device: str
    kind: str
    model: str
    username: str
    password: str


def load_sheet(path: Path) -> list[SheetRow]:
    """Every row of the sheet, ids checked, in file order."""
    try:
        with path.open(newline="") as handle:
            reader = csv.DictReader(handle)
            if tuple(reader.fieldnames or ()) not in HEADERS:
                raise ConfigError(f"credentials file {path}: header must be {','.join(HEADER)}")
            out: list[SheetRow] = []
            for row in reader:
                try:
                    centre = check_id(row["centre_id"], "centre")
                    device = check_id(row["device_id"], "device")
                except TopicError as exc:
                    raise ConfigError(
                        f"credentials file {path} line {reader.line_num}: {exc}"
                    ) from None
                if not row["username"] or not row["password"]:
                    raise ConfigError(
                        f"credentials file {path} line {reader.line_num}: empty login"
                    )
                out.append(
                    SheetRow(
                        centre, device, row["kind"], row["model"], row["username"], row["password"]
                    )
                )
            return out
    except OSError as exc:
        raise ConfigError(f"credentials file {path}: {exc.strerror}") from None


def load_credentials(path: Path) -> dict[str, tuple[str, str]]:
    """device id -> (username, password)."""
    return {row.device: (row.username, row.password) for row in load_sheet(path)}
