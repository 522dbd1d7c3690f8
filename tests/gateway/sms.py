"""A real ``gammu-smsd`` on Gammu's dummy phone driver: the SMS outlet's other end.

The daemon runs with the FILES service: ``gammu-smsd-inject`` writes a message
into its outbox folder, the daemon sends it through the dummy modem (which
answers as a phone would) and moves the file to its sent folder. A message in
:meth:`SmsDaemon.sent` has gone all the way through.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.factories import wait_for

CONFIG = """[gammu]
model = dummy
connection = none
device = {root}/phone/

[smsd]
service = files
logfile = {root}/smsd.log
debuglevel = 1
inboxpath = {root}/inbox/
outboxpath = {root}/outbox/
sentsmspath = {root}/sent/
errorsmspath = {root}/error/
loopsleep = 1
commtimeout = 1
sendtimeout = 5
checksecurity = 0
checkbattery = 0
checksignal = 0
"""


class SmsDaemon:
    def __init__(self, root: Path) -> None:
        if shutil.which("gammu-smsd") is None:
            pytest.fail("gammu-smsd is not installed (make deps installs it)")
        self.root = root
        for folder in ("phone", "inbox", "outbox", "sent", "error"):
            (root / folder).mkdir(parents=True, exist_ok=True)
        self.config = root / "smsdrc"
        self.config.write_text(CONFIG.format(root=root))
        self.process = subprocess.Popen(
            ["gammu-smsd", "-c", str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        log = root / "smsd.log"
        wait_for(
            lambda: log.exists() and "Starting phone communication" in log.read_text(),
            10,
            "gammu-smsd up",
        )

    def sent(self) -> list[str]:
        """The messages the dummy modem sent (their smsbackup text)."""
        return [p.read_text() for p in sorted((self.root / "sent").iterdir())]

    def failed(self) -> list[str]:
        return [p.name for p in (self.root / "error").iterdir()]

    def close(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
