"""``gramlink ingest`` logs in the one format and no third-party logger speaks per write.

Before, 10 of 14 lines of a 5 s run were httpx's INFO line for every InfluxDB write.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

from tests.factories import unique_id, wait_for
from tests.ingest.conftest import REPO, Publisher, count, ingest_env, now_ms, worker_settings

VALUE = r'(?:"(?:[^"\\]|\\.)*"|[^\s"=\\]+)'
LINE = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} level=(?:DEBUG|INFO|WARNING|ERROR|CRITICAL) "
    rf"logger=(?P<logger>\S+) event=(?P<event>{VALUE})(?: [a-z_][a-z0-9_]*={VALUE})*$"
)
QUIET = ("httpx", "httpcore", "paho", "urllib3", "uvicorn", "influxdb_client")


def test_every_line_of_a_run_has_the_one_format(mosquitto, influx, tmp_path: Path) -> None:
    centre = unique_id("c")
    settings = worker_settings(mosquitto, influx, log_level="info", batch_age_ms=20)
    stderr = tmp_path / "stderr"
    with stderr.open("w") as err:
        worker = subprocess.Popen(
            [sys.executable, "-m", "gramlink", "ingest"],
            cwd=REPO,
            env=ingest_env(settings),
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    try:
        wait_for(lambda: "event=ingest_started" in stderr.read_text(), 20, "worker started")
        pub = Publisher(mosquitto)
        sent = 0
        for round_ in range(20):  # many small batches: one InfluxDB write each
            sent += pub.readings(centre, ["pw-1"], range(round_ * 10, round_ * 10 + 10), now_ms())
            pub.flush()
            wait_for(lambda n=sent: count(influx, "power", centre) == n, 20, "stored")
        pub.close()
    finally:
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(30) == 0
    lines = stderr.read_text().splitlines()
    assert any("event=ingest_stopped" in line for line in lines)
    bad = [line for line in lines if LINE.match(line) is None]
    assert bad == []
    loggers = {LINE.match(line).group("logger") for line in lines}  # type: ignore[union-attr]
    assert not [name for name in loggers if name.split(".")[0] in QUIET], loggers
    assert len(lines) < 20, lines  # a handful of lines for 20 writes, not one per write
