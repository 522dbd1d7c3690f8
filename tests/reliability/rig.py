"""The whole delivery path as real processes, for the reliability scenarios.

A :class:`Rig` runs, under one work directory: InfluxDB, the central Mosquitto,
an ingest worker (``gramlink ingest``, its own service account), the centre's
Mosquitto, a TCP proxy carrying the gateway's uplink (so the uplink can be cut
without touching the broker), the gateway (``gramlink gateway``) and a simulated
centre (``firmware_sim``, one connection per device, a steady few hundred
readings/s). Each process can be stopped, killed and started again by the
scenarios; :meth:`Rig.close` ends everything the rig started, in reverse order.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import httpx

from firmware_sim.faults import FaultConfig
from firmware_sim.fleet import Fleet, FleetConfig
from gramlink.broker_accounts import DynsecSession, ensure_account, ingest_account, new_password
from gramlink.services import InfluxService, MosquittoService
from gramlink.services.process import free_port, port_in_use
from tests.factories import wait_for

REPO = Path(__file__).resolve().parents[2]
PSEUDONYM_KEY = "reliability-centre-key-" + "k" * 16
SHARE_GROUP = "ingest"


@dataclass(frozen=True)
class Load:
    """The simulated centre: ``devices`` devices, each one reading every ``interval_s``
    simulated seconds on a clock ``accelerate`` times real time (readings/s =
    devices x accelerate / interval_s), starting a day back so no reading is from
    the future."""

    devices: int = 7
    interval_s: int = 7
    accelerate: float = 300.0
    malformed_rate: float = 0.0

    @property
    def rate(self) -> float:
        return self.devices * self.accelerate / self.interval_s


class UplinkProxy:
    """A TCP relay between the gateway and the central broker; :meth:`cut` drops every
    connection abruptly (no MQTT DISCONNECT) and refuses new ones until :meth:`restore`."""

    def __init__(self, upstream_port: int, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = free_port(host)
        self.upstream_port = upstream_port
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._listener: socket.socket | None = None

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, self.port))
        listener.listen(16)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        with self._lock:
            listener, self._listener = self._listener, None
            sockets, self._sockets = self._sockets, []
        for sock in [*sockets, *([listener] if listener else [])]:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def restore(self) -> None:
        self.start()

    def stop(self) -> None:
        self.cut()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # cut or closed
            try:
                upstream = socket.create_connection((self.host, self.upstream_port), timeout=2)
            except OSError:
                client.close()  # the broker is down: the gateway sees a refused link
                continue
            upstream.settimeout(None)
            with self._lock:
                if self._listener is not listener:
                    client.close()
                    upstream.close()
                    return
                self._sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while chunk := source.recv(65536):
                sink.sendall(chunk)
        except OSError:
            pass
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class Stoppable(Protocol):
    def stop(self) -> object: ...


class ProcessDied(AssertionError):
    """The gateway or the ingest worker exited on its own during a scenario."""


class Child:
    """One ``python -m gramlink ...`` process with its environment and a log file."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.name = name
        self.argv = argv
        self.env = env
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None
        self.wanted = False  # started by us and not since stopped or killed on purpose

    def start(self) -> None:
        self.wanted = True
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "gramlink", *self.argv],
                cwd=REPO,
                env={**os.environ, **self.env},
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        self.signal(signal.SIGKILL)

    def died(self) -> str | None:
        """If the process ended without being told to: its exit code and last log lines."""
        if not self.wanted or self.proc is None or self.proc.poll() is None:
            return None
        tail = self.log.read_text(errors="replace").strip().splitlines()[-4:]
        return f"{self.name} exited with {self.proc.returncode}: " + " | ".join(tail)

    def signal(self, sig: signal.Signals) -> None:
        self.wanted = False
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(30)

    def stop(self) -> None:
        self.wanted = False
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


class Rig:
    """Every process of one centre's delivery path; see the module docstring."""

    def __init__(self, workdir: Path, centre: str, load: Load, gateway_env: dict[str, str]) -> None:
        self.workdir = workdir
        self.centre = centre
        self.load = load
        workdir.mkdir(parents=True, exist_ok=True)
        self.influx = InfluxService(workdir / "influxdb", free_port(), secrets.token_urlsafe(16))
        self.central = MosquittoService(workdir / "central", free_port(), secrets.token_urlsafe(16))
        # The centre's broker runs the shipped centre_broker.conf (issue #11, item 5).
        self.centre_broker = MosquittoService(
            workdir / "centre", free_port(), secrets.token_urlsafe(16), centre=True
        )
        self.proxy = UplinkProxy(self.central.port)
        self.ingest_metrics_port = free_port()
        self.gateway_env = gateway_env
        self.ingest: Child | None = None
        self.gateway: Child | None = None
        self.fleet: Fleet | None = None
        self._started: list[Stoppable] = []

    # --- lifetime ----------------------------------------------------------------------
    def start(self) -> None:
        for service in (self.influx, self.central, self.centre_broker):
            service.start()
            self._started.append(service)
        self.proxy.start()
        self._started.append(self.proxy)
        self.ingest = self._ingest_child()
        self.gateway = self._gateway_child()
        self.ingest.start()
        self._started.append(self.ingest)
        self.wait_ingest_subscribed()
        self.gateway.start()
        self._started.append(self.gateway)

    def close(self) -> None:
        if self.fleet is not None:
            self.fleet.stop(drain_s=2)
        for thing in reversed(self._started):
            with contextlib.suppress(Exception):
                thing.stop()

    def alive(self) -> bool:
        """True, or raise if the gateway or the ingest worker ended by itself (a crash fails
        the scenario, named with the process's last log lines)."""
        for child in (self.gateway, self.ingest):
            failure = child.died() if child is not None else None
            if failure is not None:
                raise ProcessDied(failure)
        return True

    def start_fleet(self) -> Fleet:
        load = self.load
        fleet = Fleet(
            FleetConfig(
                port=self.centre_broker.port,
                centre_ids=(self.centre,),
                devices_per_centre=load.devices,
                mode="device",
                interval_s=load.interval_s,
                accelerate=load.accelerate,
                start_ms=int(time.time() * 1000) - 24 * 3600 * 1000,
                username=self.centre_broker.admin_user,
                password=self.centre_broker.admin_password,
                faults=FaultConfig(malformed_rate=load.malformed_rate),
            )
        )
        fleet.start()
        self.fleet = fleet
        if not fleet.wait_connected(30):
            raise AssertionError("the simulated centre did not connect to its broker")
        return fleet

    def restart(self, service: MosquittoService | InfluxService) -> None:
        """Start a stopped or killed service again on its port (the kernel may hold the
        port for a moment after a SIGKILL)."""
        wait_for(lambda: not port_in_use(service.bind, service.port), 10, "the port freed")
        service.start()

    # --- ingest ------------------------------------------------------------------------
    def _ingest_child(self) -> Child:
        username, password = "ingest", new_password()
        with DynsecSession(
            self.central.url, self.central.admin_user, self.central.admin_password
        ) as session:
            ensure_account(session, ingest_account(username, SHARE_GROUP), password)
        env = {
            "GRAMLINK_INGEST_MQTT_URL": self.central.url,
            "GRAMLINK_INGEST_MQTT_USERNAME": username,
            "GRAMLINK_INGEST_MQTT_PASSWORD": password,
            "GRAMLINK_INGEST_INFLUX_URL": self.influx.url,
            "GRAMLINK_INGEST_INFLUX_DATABASE": self.influx.database,
            "GRAMLINK_INGEST_INFLUX_USERNAME": self.influx.admin_user,
            "GRAMLINK_INGEST_INFLUX_PASSWORD": self.influx.admin_password,
            "GRAMLINK_INGEST_CLIENT_ID": "ingest-reliability-1",
            "GRAMLINK_INGEST_SHARE_GROUP": SHARE_GROUP,
            "GRAMLINK_INGEST_METRICS_PORT": str(self.ingest_metrics_port),
            "GRAMLINK_INGEST_PIPELINE_INTERVAL_S": "0",
            "GRAMLINK_INGEST_BATCH_AGE_MS": "100",
        }
        return Child("ingest", ["ingest"], env, self.workdir / "ingest.log")

    def ingest_metric(self, name: str) -> float | None:
        try:
            text = httpx.get(f"http://127.0.0.1:{self.ingest_metrics_port}/metrics", timeout=2).text
        except httpx.HTTPError:
            return None
        for line in text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        return None

    def wait_ingest_subscribed(self, timeout: float = 30) -> None:
        wait_for(
            lambda: self.ingest_metric("gramlink_ingest_subscribed") == 1.0,
            timeout,
            "the ingest worker subscribed",
        )

    def restart_ingest(self) -> None:
        assert self.ingest is not None
        self.ingest.start()
        self.wait_ingest_subscribed()

    # --- gateway -----------------------------------------------------------------------
    def _gateway_child(self) -> Child:
        env = {
            "GRAMLINK_GATEWAY_PSEUDONYM_KEY": PSEUDONYM_KEY,
            "GRAMLINK_GATEWAY_LOCAL_USERNAME": self.centre_broker.admin_user,
            "GRAMLINK_GATEWAY_LOCAL_PASSWORD": self.centre_broker.admin_password,
            "GRAMLINK_GATEWAY_UPLINK_USERNAME": self.central.admin_user,
            "GRAMLINK_GATEWAY_UPLINK_PASSWORD": self.central.admin_password,
            "GRAMLINK_GATEWAY_HEALTH_INTERVAL_S": "5",
            **self.gateway_env,
        }
        argv = ["gateway", "--centre", self.centre, "--local-url", self.centre_broker.url]
        argv += ["--uplink-url", self.proxy.url, "--data-dir", str(self.workdir / "gateway")]
        argv += ["--batch-max-age-ms", "100", "--backoff-min-s", "0.2", "--backoff-max-s", "2"]
        return Child("gateway", argv, env, self.workdir / "gateway.log")
