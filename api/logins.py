"""Logins of devices and gateways on the central broker, behind one small interface.

Two stores implement it:

- :class:`DynsecLogins`: one dynamic-security client and role per device, sent as
  control commands (works with a broker on another host; Mosquitto 2.0 rewrites
  its whole JSON file per command, so a large rollout is slow);
- :class:`api.broker_files.FileLogins`: the broker's ``password_file`` and
  ``acl_file``, rewritten once per change set and applied with a reload (needs the
  broker's files and process on this host; 10,000 devices in one reload).

Errors (both retryable from the caller's view): ``DynsecError`` from the dynsec
store, ``BrokerFilesError`` from the files store; the provisioning service maps
both to a 503.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from api.dynsec import DynsecClient
from contract.metrics import DeviceKind
from contract.provisioning import (
    DynsecOp,
    existed,
    mqtt_username,
    op_commands,
    password_command,
    upsert_commands,
)


@dataclass(frozen=True)
class LoginChange:
    """One change to one login; ``password`` is set for upsert and enable."""

    op: DynsecOp
    centre: str
    device: str
    kind: DeviceKind
    password: str | None = None
    enabled: bool = True

    @property
    def username(self) -> str:
        return mqtt_username(self.centre, self.device)


class CentralLogins(Protocol):
    def apply(self, changes: list[LoginChange]) -> None:
        """Make the broker enforce the changes before returning."""

    def undo(self, changes: Iterable[LoginChange]) -> None:
        """Best effort: remove the logins these changes created."""


class DynsecLogins:
    def __init__(self, dynsec: DynsecClient) -> None:
        self.dynsec = dynsec

    def apply(self, changes: list[LoginChange]) -> None:
        commands = []
        passwords: dict[str, str] = {}
        for change in changes:
            if change.op is DynsecOp.UPSERT:
                assert change.password is not None
                passwords[change.username] = change.password
                commands += upsert_commands(
                    change.centre, change.device, change.kind, change.password
                )
            else:
                commands += op_commands(change.op, change.centre, change.device)
        answers = self.dynsec.execute(commands)
        again = [
            password_command(c["username"], passwords[c["username"]])
            for c, a in zip(commands, answers, strict=True)
            if existed(c, a)
        ]
        if again:
            self.dynsec.execute(again)

    def undo(self, changes: Iterable[LoginChange]) -> None:
        commands = []
        for change in changes:
            commands += op_commands(DynsecOp.DELETE, change.centre, change.device)
        missing = {("deleteClient", "Client not found"), ("deleteRole", "Role not found")}
        self.dynsec.execute(commands, tolerate=frozenset(missing))
