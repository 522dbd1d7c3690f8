"""``gramlink demo``: the whole system on one machine, until Ctrl-C.

The central stack (Mosquitto, InfluxDB), the API, which provisions a hub centre
and its spokes, one local broker and gateway per centre, the centres' simulated
devices (with the credentials the API issued, on an accelerated clock replaying
the past days) and an ingest worker. A live line shows readings published at the
centres, relayed to the central broker and written to InfluxDB, and the progress
of a staged firmware campaign over the routers (``gramlink.demo_campaign``).

Ingest logs in with its own broker account (``gramlink stack``), not the admin.
The children are supervised like the systemd units run them
(``gramlink.children``): one that ends for a transient reason, or is killed
(kill a centre's gateway to watch store-and-forward), is restarted with backoff
and the output says so; one that stops with a permanent exit code stops the
demo with its line.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import sys
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack, suppress
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import httpx
import paho.mqtt.client as mqtt

from contract.codec import DecodeError, decode_batch
from contract.provisioning import mqtt_username
from contract.topics import Channel, subscription
from dashboards.push import push_command
from firmware_sim.fleet import Fleet, FleetConfig
from firmware_sim.site import site_facts
from gramlink.children import Child, PermanentExit, Supervisor, gramlink_argv
from gramlink.demo_campaign import DemoCampaign
from gramlink.demo_places import locate, place_of
from gramlink.demo_provision import CentreCredentials, provision
from gramlink.services import MosquittoService, ServiceError
from gramlink.services.process import free_port, wait_until
from gramlink.stack import DEFAULT_HOME, INGEST_USER, Stack

DAY_MS = 86_400_000


@dataclass(frozen=True)
class DemoOptions:
    home: Path = DEFAULT_HOME
    spokes: int = 2
    devices_per_centre: int = 7
    api_port: int = 8000
    mqtt_port: int | None = None  # None: the stack's default (1883)
    influx_port: int | None = None  # None: the stack's default (8086)
    accelerate: float = 720.0
    history_days: float = 7.0
    duration_s: float | None = None  # None: until Ctrl-C


def centre_seed(centre: str) -> int:
    """Each centre's simulation seed: its sky, grid cuts and devices differ, reruns agree."""
    return sum(map(ord, centre))


def say(text: str) -> None:
    print(text, flush=True)  # noqa: T201


def load_secrets(path: Path) -> dict[str, str]:
    """The demo's own secrets (mode 0600). A deployment keeps the master secret in the
    API's environment only; the demo keeps it so a second run finds its devices again."""
    if path.exists():
        data: dict[str, str] = json.loads(path.read_text())
        return data
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {
        "master_secret": secrets.token_urlsafe(48),
        "pseudonym_key": secrets.token_urlsafe(32),
        "local_admin_password": secrets.token_urlsafe(24),
    }
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(data, out)
    return data


class RelayCounter:
    """Counts readings arriving on the central broker in gateway batches."""

    def __init__(self, broker: MosquittoService) -> None:
        self.records = 0
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=f"demo-observer-{secrets.token_hex(3)}",
            protocol=mqtt.MQTTv5,
        )
        self.client.username_pw_set(broker.admin_user, broker.admin_password)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.connect(broker.bind, broker.port)
        self.client.loop_start()

    def _on_connect(self, client: mqtt.Client, *_: object) -> None:
        client.subscribe(subscription(Channel.GATEWAY_BATCH), qos=0)

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        with suppress(DecodeError):
            self.records += len(decode_batch(bytes(msg.payload)).records)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def points_written(metrics_url: str) -> tuple[int, int]:
    """(points written, quarantined) from the ingest worker's Prometheus endpoint."""
    try:
        text = httpx.get(metrics_url, timeout=2.0).text
    except httpx.HTTPError:
        return -1, -1
    written = sum(
        float(v) for v in re.findall(r"^gramlink_ingest_points_written_total (\S+)$", text, re.M)
    )
    quarantined = sum(
        float(v) for v in re.findall(r"^gramlink_ingest_quarantined_total\{.*\} (\S+)$", text, re.M)
    )
    return int(written), int(quarantined)


def open_alerts(api_url: str, token: str) -> str:
    """Open alerts by severity, from the API (``/v1/alerts/counts``), for the live line."""
    try:
        answer = httpx.get(
            f"{api_url}/v1/alerts/counts",
            headers={"authorization": f"Bearer {token}"},
            timeout=2.0,
        )
        answer.raise_for_status()
        totals = answer.json()["totals"]
        clinical = sum(c["clinical"] for c in answer.json()["centres"])
    except (httpx.HTTPError, ValueError, KeyError):
        return "alerts ?"
    return (
        f"alerts {totals['critical']} critical {totals['warning']} warning "
        f"{totals['info']} info ({clinical} clinical)"
    )


class WrittenCounter:
    """Totals across ingest restarts (a restarted worker's counters start again from 0)."""

    def __init__(self) -> None:
        self._seen = (0, 0)
        self._base = (0, 0)

    def update(self, written: int, quarantined: int) -> tuple[int, int]:
        if written >= 0:  # -1: the worker is not answering (restarting)
            if written < self._seen[0] or quarantined < self._seen[1]:
                self._base = (self._base[0] + self._seen[0], self._base[1] + self._seen[1])
            self._seen = (written, quarantined)
        return self._base[0] + self._seen[0], self._base[1] + self._seen[1]


def connects(broker: MosquittoService, username: str, password: str) -> bool:
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id=f"demo-probe-{secrets.token_hex(3)}"
    )
    client.username_pw_set(username, password)
    try:
        client.connect(broker.bind, broker.port, keepalive=10)
        client.loop_start()
        deadline = time.monotonic() + 3
        while not client.is_connected() and time.monotonic() < deadline:
            time.sleep(0.05)
        return client.is_connected()
    except OSError:
        return False
    finally:
        client.disconnect()
        client.loop_stop()


class Demo:
    def __init__(self, options: DemoOptions) -> None:
        self.options = options
        self.home = options.home.resolve()
        self.work = self.home / "demo"
        self.logs = self.work / "logs"
        self.secrets = load_secrets(self.work / "secrets.json")
        self.stack = Stack(self.home, options.mqtt_port, options.influx_port)
        self.hub = "hub"
        self.spokes = [f"spoke{i}" for i in range(1, options.spokes + 1)]
        # the centre whose simulation runs the demo scenario (firmware_sim/scenario.py): a small
        # battery, a 12 h night grid cut, a low-SpO2 patient, a thermometer that hangs for 6 h
        self.troubled = self.spokes[0] if self.spokes else self.hub
        self.supervisor = Supervisor(say)
        self.local_brokers: list[MosquittoService] = []

    def child(self, name: str, args: list[str], env: dict[str, str]) -> Child:
        """A long-running ``gramlink`` process, restarted when it ends for a transient reason."""
        return self.supervisor.start(Child(name, gramlink_argv(*args), env, self.logs))

    def check_children(self) -> None:
        """Restart what died for a transient reason; PermanentExit when one stopped for good."""
        self.supervisor.poll()

    def run(self, stop: threading.Event) -> int:
        with ExitStack() as cleanup:
            say("starting the central stack (mosquitto, influxdb) ...")
            self.stack.up()
            cleanup.callback(self.stack.down)
            cleanup.callback(self._stop_local_brokers)
            cleanup.callback(self._stop_children)
            central = self.stack.mosquitto
            influx = self.stack.influx
            influx_env = {  # ingest runs with its own broker account, not the admin
                "GRAMLINK_INGEST_MQTT_URL": central.url,
                "GRAMLINK_INGEST_MQTT_USERNAME": INGEST_USER,
                "GRAMLINK_INGEST_MQTT_PASSWORD": self.stack.ingest_password,
                "GRAMLINK_INGEST_INFLUX_URL": influx.url,
                "GRAMLINK_INGEST_INFLUX_USERNAME": influx.admin_user,
                "GRAMLINK_INGEST_INFLUX_PASSWORD": influx.admin_password,
            }
            init = Child("influx-init", gramlink_argv("influx", "init"), influx_env, self.logs)
            init.start()
            wait_until(lambda: init.exit_code() is not None, 60, "influx init")
            if init.exit_code() != 0:
                raise ServiceError(f"influx init failed: {init.last_lines()}")

            say("starting the API and provisioning the centres ...")
            api_env = {
                "GRAMLINK_API_MASTER_SECRET": self.secrets["master_secret"],
                "GRAMLINK_API_FIRMWARE_DIR": str(self.work / "firmware"),
            }
            api_url = f"http://127.0.0.1:{self.options.api_port}"
            home = str(self.home)
            port = str(self.options.api_port)
            self.child("api", ["api", "--stack-home", home, "--port", port], api_env)
            wait_until(lambda: self._answers(f"{api_url}/healthz"), 60, "the API")
            token = self._create_token(api_env)
            self._install_alert_pack(api_env)
            with httpx.Client(
                base_url=api_url, headers={"authorization": f"Bearer {token}"}, timeout=120
            ) as api:
                sites = {
                    c: site_facts(
                        centre_seed(c), c, self.options.devices_per_centre, self._place(c)
                    )
                    for c in [self.hub, *self.spokes]
                }
                credentials = provision(
                    api,
                    self.secrets["master_secret"].encode(),
                    self.hub,
                    self.spokes,
                    self.options.devices_per_centre,
                    sites,
                )
                locate(api, [self.hub, *self.spokes])  # real places (gramlink.demo_places)

            metrics_port = free_port()
            self.child(
                "ingest",
                ["ingest"],
                {
                    **influx_env,
                    "GRAMLINK_INGEST_METRICS_PORT": str(metrics_port),
                    "GRAMLINK_INGEST_STATE_DIR": str(self.work / "ingest"),
                },
            )
            fleets = [self._start_centre(c, credentials[c], cleanup) for c in credentials]
            api = httpx.Client(
                base_url=api_url, headers={"authorization": f"Bearer {token}"}, timeout=10
            )
            cleanup.callback(api.close)
            campaign = DemoCampaign(api)
            campaign.start(self.hub)
            relay = RelayCounter(central)
            cleanup.callback(relay.close)

            say("")
            say(f"API docs      {api_url}/docs")
            say(f"admin token   {token}   (shown once; stored hashed)")
            say(f"influxdb      {influx.url} database {influx.database}")
            say("dashboards    into a Grafana on this machine (docs/dashboards.md):")
            hint = f"influx_admin_password in {self.home / 'credentials.json'}"
            say(f"  {push_command(influx.url, influx.database, influx.admin_user, hint)}")
            say(f"central mqtt  {central.url}")
            say(f"logs          {self.logs}")
            say(
                f"scenario      {self.troubled}: a 12 h grid cut its first night drains a small "
                "battery below 20 %, a patient at SpO2 86 %, its thermometer silent for 6 h "
                "(simulated; docs/firmware_sim.md)"
            )
            say("press Ctrl-C to stop everything the demo started")
            say("")
            say(f"firmware      a staged campaign updates the routers of {self.hub} and its spokes")
            self._report(
                stop,
                fleets,
                relay,
                f"http://127.0.0.1:{metrics_port}/metrics",
                (api_url, token),
                campaign,
            )
        say("stopped")
        return 0

    def _start_centre(self, centre: str, creds: CentreCredentials, cleanup: ExitStack) -> Fleet:
        local = MosquittoService(
            self.work / centre / "mosquitto",
            free_port(),
            self.secrets["local_admin_password"],
            centre=True,  # the shipped centre_broker.conf
        )
        local.start()
        self.local_brokers.append(local)
        self.child(
            f"gateway-{centre}",
            [
                "gateway",
                "--centre",
                centre,
                "--local-url",
                local.url,
                "--uplink-url",
                self.stack.mosquitto.url,
                "--data-dir",
                str(self.work / centre / "gateway"),
                "--firmware-port",  # the centre's routers fetch firmware from their gateway
                str(free_port()),
                "--firmware-host",
                "127.0.0.1",
            ],
            {
                "GRAMLINK_GATEWAY_PSEUDONYM_KEY": self.secrets["pseudonym_key"],
                "GRAMLINK_GATEWAY_LOCAL_USERNAME": local.admin_user,
                "GRAMLINK_GATEWAY_LOCAL_PASSWORD": local.admin_password,
                "GRAMLINK_GATEWAY_UPLINK_USERNAME": mqtt_username(creds.centre, creds.gateway_id),
                "GRAMLINK_GATEWAY_UPLINK_PASSWORD": creds.gateway_password,
                "GRAMLINK_GATEWAY_CENTRE_KEY": creds.centre_key,
            },
        )
        self._wait_for_local_credentials(local, creds)
        now = time.time_ns() // 1_000_000
        fleet = Fleet(
            FleetConfig(
                port=local.port,
                centre_ids=(centre,),
                devices_per_centre=self.options.devices_per_centre,
                credentials=creds.devices,
                accelerate=self.options.accelerate,
                start_ms=now - int(self.options.history_days * DAY_MS),
                seed=centre_seed(centre),
                scenario="demo" if centre == self.troubled else None,
                places={centre: self._place(centre)},
            )
        )
        fleet.start()
        cleanup.callback(fleet.stop)
        return fleet

    @staticmethod
    def _place(centre: str) -> tuple[float, float]:
        """The centre's real place (gramlink.demo_places): the simulated sun shines there."""
        place = place_of(centre)
        return place.latitude, place.longitude

    def _wait_for_local_credentials(
        self, local: MosquittoService, creds: CentreCredentials
    ) -> None:
        """The gateway applies the API's credential updates to its local broker: wait for them."""
        user, password = next(reversed(creds.devices.values()))

        def accepted() -> bool:
            self.check_children()
            return connects(local, user, password)

        wait_until(accepted, 90, f"credentials on the local broker of {creds.centre}")

    def _report(
        self,
        stop: threading.Event,
        fleets: list[Fleet],
        relay: RelayCounter,
        metrics_url: str,
        api: tuple[str, str],
        campaign: DemoCampaign,
    ) -> None:
        """A live line every 2 s; ``api``: the API's URL and a token to read alert counts."""
        started = time.monotonic()
        last = (started, 0, 0, 0)
        counter = WrittenCounter()
        next_line = started + 2.0
        while not stop.wait(0.5):
            self.check_children()
            for fleet in fleets:
                if fleet.fatal() is not None:
                    raise ServiceError(f"simulated devices: {fleet.fatal()}")
            now = time.monotonic()
            if now < next_line:
                continue
            next_line = now + 2.0
            published = sum(f.stats().readings for f in fleets)
            written, quarantined = counter.update(*points_written(metrics_url))
            dt = max(now - last[0], 1e-6)
            rates = [
                (published - last[1]) / dt,
                (relay.records - last[2]) / dt,
                (written - last[3]) / dt,
            ]
            connected = sum(f.stats().connected for f in fleets)
            down = self.supervisor.down()
            say(
                f"[{now - started:6.0f} s] devices {connected:3d} | published {published:8d} "
                f"({rates[0]:6.0f}/s) | relayed {relay.records:8d} ({rates[1]:6.0f}/s) | "
                f"written {written:8d} ({rates[2]:6.0f}/s) | quarantined {quarantined} | "
                f"{open_alerts(*api)} | {campaign.progress()}"
                + (f" | restarting {', '.join(down)}" if down else "")
            )
            last = (now, published, relay.records, written)
            duration = self.options.duration_s
            if duration is not None and now - started >= duration:
                return

    def _answers(self, url: str) -> bool:
        self.check_children()
        try:
            return httpx.get(url, timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False

    def _create_token(self, env: dict[str, str]) -> str:
        name = f"demo-{secrets.token_hex(2)}"
        maker = Child(
            "create-token",
            gramlink_argv(
                "api",
                "--stack-home",
                str(self.home),
                "create-token",
                "--role",
                "admin",
                "--name",
                name,
            ),
            env,
            self.logs,
        )
        maker.log_file.unlink(missing_ok=True)
        maker.start()
        wait_until(lambda: maker.exit_code() is not None, 60, "create-token")
        lines = maker.log_file.read_text().split()
        maker.log_file.unlink()  # the token is shown once, not kept
        if maker.exit_code() != 0 or not lines:
            raise ServiceError("could not create the demo's admin token")
        return lines[-1]

    def _install_alert_pack(self, env: dict[str, str]) -> None:
        """The default alert rules (``gramlink alerts install-defaults``; again: no change)."""
        argv = gramlink_argv("alerts", "install-defaults", "--stack-home", str(self.home))
        installer = Child("alerts-install-defaults", argv, env, self.logs)
        installer.log_file.unlink(missing_ok=True)
        installer.start()
        wait_until(lambda: installer.exit_code() is not None, 60, "alerts install-defaults")
        if installer.exit_code() != 0:
            raise ServiceError(f"alerts install-defaults failed: {installer.last_lines()}")
        say(f"alert rules   {installer.last_lines(1)}")

    def _stop_local_brokers(self) -> None:
        for broker in self.local_brokers:
            broker.stop()

    def _stop_children(self) -> None:
        self.supervisor.stop_all()


def run_demo(options: DemoOptions) -> int:
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    previous: list[Callable[..., object] | int | None] = [
        signal.signal(signal.SIGINT, on_signal),
        signal.signal(signal.SIGTERM, on_signal),
    ]
    try:
        return Demo(options).run(stop)
    except ServiceError as exc:
        print(f"error: {exc}", file=sys.stderr)  # noqa: T201
        return 1
    except PermanentExit as exc:  # restarting it cannot help: the demo stops, with its line
        print(f"error: {exc}", file=sys.stderr)  # noqa: T201
        return exc.code
    finally:
        signal.signal(signal.SIGINT, previous[0])  # type: ignore[arg-type]
        signal.signal(signal.SIGTERM, previous[1])  # type: ignore[arg-type]
