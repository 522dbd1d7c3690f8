"""The demo end to end: API provisioning, simulated devices with their own credentials,
local brokers and gateways, the central broker, ingest and InfluxDB, then a clean stop."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from gramlink.services.process import free_port
from tests.factories import wait_for


def child_pid(home: Path, *args: str) -> int:
    """The PID of the demo's ``gramlink ARGS...`` child working under ``home``."""
    want = [a.encode() for a in args]
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        inside = str(home.resolve()).encode() in b" ".join(argv)
        if b"gramlink" in argv and inside and all(a in argv for a in want):
            return int(proc.name)
    raise AssertionError(f"no child {args} of the demo in {home}")


@pytest.mark.slow
def test_demo_moves_readings_from_devices_to_influxdb_and_stops_clean(tmp_path: Path) -> None:
    home = tmp_path / "home"
    mqtt_port, influx_port, api_port = free_port(), free_port(), free_port()
    out = (tmp_path / "demo.out").open("w+")
    demo = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gramlink",
            "demo",
            "--home",
            str(home),
            "--mqtt-port",
            str(mqtt_port),
            "--influx-port",
            str(influx_port),
            "--api-port",
            str(api_port),
            "--spokes",
            "1",
        ],
        stdout=out,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:

        def written() -> int:
            found = re.findall(r"written +(\d+)", Path(out.name).read_text())
            return int(found[-1]) if found else 0

        def failed() -> bool:
            return demo.poll() is not None

        wait_for(lambda: failed() or written() >= 200, 240, "readings written by the demo")
        assert not failed(), Path(out.name).read_text()[-3000:]
        # The staged campaign updates the two routers (hub, spoke1) through their gateways.
        wait_for(
            lambda: (
                failed() or "ota 2/2 succeeded, stage 2/2, completed" in Path(out.name).read_text()
            ),
            120,
            "the demo's firmware campaign",
        )
        assert not failed(), Path(out.name).read_text()[-3000:]

        creds = json.loads((home / "credentials.json").read_text())
        answer = httpx.get(
            f"http://127.0.0.1:{influx_port}/query",
            params={
                "db": "gramlink",
                "u": "admin",
                "p": creds["influx_admin_password"],
                "q": 'SELECT count("seq") FROM "power","health","router" GROUP BY "centre"',
            },
        ).json()
        centres = {s["tags"]["centre"] for s in answer["results"][0]["series"]}
        assert centres == {"hub", "spoke1"}
        # Provisioned through the API, every device is known to its gateway with its kind.
        refused = httpx.get(
            f"http://127.0.0.1:{influx_port}/query",
            params={
                "db": "gramlink",
                "u": "admin",
                "p": creds["influx_admin_password"],
                "q": 'SELECT count("detail") FROM "quarantine" GROUP BY "reason"',
            },
        ).json()
        reasons = {s["tags"]["reason"] for s in refused["results"][0].get("series", [])}
        for store in home.rglob("gateway/*.sqlite3"):  # each centre gateway's own quarantine
            with contextlib.closing(sqlite3.connect(store)) as db:
                reasons |= {r for (r,) in db.execute("SELECT DISTINCT reason FROM quarantine")}
                (known,) = db.execute("SELECT count(*) FROM centre_devices").fetchone()
                assert known > 0, f"{store}: the gateway learnt no device from the API"
        assert not reasons & {"unknown_device", "kind_mismatch", "internal_error"}, reasons
        assert len(list(home.rglob("gateway/*.sqlite3"))) == 2
        text = Path(out.name).read_text()
        assert f"API docs      http://127.0.0.1:{api_port}/docs" in text
        token = re.search(r"admin token   (glt_\S+)", text)
        assert token is not None
        assert "gramlink dashboards push --grafana-url http://127.0.0.1:3000" in text
        # The API wrote the registry's places for the dashboards: Samba's hub, its spoke.
        places = httpx.get(
            f"http://127.0.0.1:{influx_port}/query",
            params={
                "db": "gramlink",
                "u": "admin",
                "p": creds["influx_admin_password"],
                "q": 'SELECT last("latitude") FROM "centres" GROUP BY "centre", "district"',
            },
        ).json()
        districts = {
            s["tags"]["centre"]: s["tags"]["district"]
            for s in places["results"][0].get("series", [])
        }
        assert districts == {"hub": "Samba", "spoke1": "Samba"}

        # What ingest wrote is what the API reads back, through the device's registry entry.
        latest = httpx.get(
            f"http://127.0.0.1:{api_port}/v1/devices/spoke1-pwr1/telemetry/latest",
            headers={"authorization": f"Bearer {token.group(1)}"},
        )
        assert latest.status_code == 200, latest.text
        body = latest.json()
        assert body["measurement"] == "power"
        assert body["centre_id"] == "spoke1"
        (reading,) = body["readings"]
        assert 0 <= reading["values"]["battery_soc_pct"] <= 100
        assert isinstance(reading["values"]["seq"], int)

        # The demo's scenario: a patient at SpO2 86 % at spoke1 raises a clinical alert
        # (default pack, installed by the demo), and the live line counts it.
        def clinical() -> list[dict[str, object]]:
            found = httpx.get(
                f"http://127.0.0.1:{api_port}/v1/alerts",
                params={"clinical": "true", "centre": "spoke1"},
                headers={"authorization": f"Bearer {token.group(1)}"},
            )
            assert found.status_code == 200, found.text
            items: list[dict[str, object]] = found.json()["items"]
            return items

        # Other patients follow the usual mix (a few per cent out of range), so theirs may
        # fire too; the scenario's is the SpO2 of 86.
        def scenario_alert() -> bool:
            return any(a["rule_id"] == "spo2-low" and a["value"] == 86.0 for a in clinical())

        wait_for(lambda: failed() or scenario_alert(), 180, "the scenario's clinical alert")
        assert not failed(), Path(out.name).read_text()[-3000:]
        wait_for(
            lambda: (
                failed()
                or re.search(
                    r"alerts \d+ critical .*\([1-9]\d* clinical\)", Path(out.name).read_text()
                )
                is not None
            ),
            30,
            "open alerts in the live line",
        )

        # Kill one centre's gateway as a user watching store-and-forward would: the demo
        # restarts it, says so, and readings keep arriving.
        gateway = child_pid(home, "gateway", "--centre", "hub")
        os.kill(gateway, signal.SIGKILL)
        before = written()
        wait_for(
            lambda: failed() or "gateway-hub restarted" in Path(out.name).read_text(),
            60,
            "the gateway restarted",
        )
        assert not failed(), Path(out.name).read_text()[-3000:]
        assert "gateway-hub ended (killed by SIGKILL); restarting in" in Path(out.name).read_text()
        assert child_pid(home, "gateway", "--centre", "hub") != gateway
        wait_for(lambda: failed() or written() >= before + 200, 120, "readings after the restart")
        assert not failed(), Path(out.name).read_text()[-3000:]
    finally:
        demo.send_signal(signal.SIGINT)
        demo.wait(120)
    assert demo.returncode == 0, Path(out.name).read_text()[-3000:]
    assert list(home.rglob("*.pid")) == [], "a service the demo started is still recorded"
