"""The central alert engine beside bench/gateway.py's drain: when each clinical alert opens.

``gramlink alerts`` runs as a process of its own (as it does next to the API,
with its own CPU) on the benchmark's central broker, with a registry of its
own (SQLite, WAL): the default pack (18 rules, the clinical ones included) and
the benchmark's centre with its devices registered (100 routers of the
backlog, the live router, the probe, the pulse oximeter, the gateway).

"Opened" is the engine's alert row in the registry, committed: that is the
alert the API lists, the dashboards' alert panel reads and the notifications
are queued from, in the same transaction. (A webhook's arrival adds the notify
worker's round trip, measured in bench/alerts.py; the ``alerts`` measurement in
InfluxDB is written after the commit and only when InfluxDB is configured.)
A poller thread reads the open clinical alerts of the expected patients every
``POLL_S`` and notes the first time it saw each: the figure is late by at most
one poll.

Each clinical reading is an SpO2 of 85 for a patient of its own
(:func:`patient_id`), so each opens an alert of its own; the gateway replaces
the patient id by its pseudonym before it leaves the centre, which
:meth:`CentralAlerts.expect` computes the same way to find the alert.

The gateway gets the rules it evaluates at the centre as the API would send
them (:func:`give_edge_rules`: the default pack's edge rules, the clinical ones,
in a :class:`contract.edge.EdgeRules` on its downlink, published as the broker
admin, and its ``EdgeRulesAck`` awaited): it then raises each clinical alert
itself and sends it upstream in its priority lane, and the engine opens the
central alert from that message (its edge session), with the id the reading
would give it. :meth:`CentralAlerts.from_edge` counts the alerts opened so.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterable
from pathlib import Path
from typing import Final

import paho.mqtt.client as mqtt
from sqlalchemy import select

from alerting.defaults import DEFAULT_PACK
from alerting.rules import Rule
from api.db.models import Alert, Centre, Device
from api.db.session import make_engine, migrate, session_factory
from api.services import alert_pack
from api.services.edge_rules import at_edge
from contract.codec import encode_batch_parts
from contract.edge import EdgeRules, decode_rules_ack, rules_ack_topic, rules_topic
from contract.pseudonym import pseudonymize
from gramlink.services import InfluxService, MosquittoService
from gramlink.services.process import free_port

POLL_S: Final = 0.02
EVALUATED: Final = "gramlink_alerts_readings_evaluated_total"
WARMUP: Final = "bench-warmup"


def patient_id(seq: int) -> str:
    """The local patient id of the benchmark's clinical reading ``seq``."""
    return f"bench-p{seq}"


def setup_registry(db_url: str, centre: str, devices: Iterable[tuple[str, str]]) -> None:
    """A registry with the default pack and ``centre`` holding ``devices`` (id, kind)."""
    engine = make_engine(db_url)
    migrate(engine)
    with session_factory(engine).begin() as s:
        alert_pack.install(s, "bench")
        s.add(Centre(id=centre, name=centre, district="d", state="s"))
        for device, kind in devices:
            s.add(Device(id=device, centre_id=centre, kind=kind, model="m"))
    engine.dispose()


def edge_rules() -> list[Rule]:
    """The default pack's rules a centre's gateway evaluates (as the registry holds them)."""
    rules = []
    for key, spec in DEFAULT_PACK.items():
        fields = spec.model_dump(mode="json", by_alias=True)
        rule = Rule.model_validate({**fields, "id": key, "version": 1, "enabled": True})
        if at_edge(rule):
            rules.append(rule)
    return rules


def give_edge_rules(
    central: MosquittoService, centre: str, gateway: str, timeout: float = 60.0
) -> int:
    """Send ``gateway`` the default pack's edge rules on its downlink, as the API does, until
    it acknowledged holding them; returns how many it holds."""
    rules = [r.model_dump(mode="json", by_alias=True) for r in edge_rules()]
    update = EdgeRules(seq=int(time.time()), rules=rules).model_dump_json().encode()
    acks: list[bytes] = []
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.username_pw_set(central.admin_user, central.admin_password)
    client.on_message = lambda c, u, msg: acks.append(bytes(msg.payload))
    subscribed = threading.Event()
    client.on_subscribe = lambda *a: subscribed.set()
    client.connect(central.bind, central.port)
    client.loop_start()
    try:
        client.subscribe(rules_ack_topic(centre, gateway), qos=1)
        if not subscribed.wait(10):
            raise SystemExit("no SUBACK for the gateway's rule acks")
        deadline = time.monotonic() + timeout
        while True:  # again every second: the gateway may not be subscribed yet
            client.publish(rules_topic(centre, gateway), update, qos=1)
            stop = time.monotonic() + 1.0
            while time.monotonic() < stop:
                for payload in list(acks):
                    ack = decode_rules_ack(payload)
                    if not ack.ok:
                        raise SystemExit(f"the gateway refused its edge rules: {ack.error}")
                    if ack.rules == len(rules):
                        return ack.rules
                time.sleep(0.05)
            if time.monotonic() > deadline:
                raise SystemExit("the gateway never acknowledged its edge rules")
    finally:
        client.disconnect()
        client.loop_stop()


class CentralAlerts:
    """``gramlink alerts`` on ``central`` and a poller timing each expected alert."""

    def __init__(
        self,
        home: Path,
        central: MosquittoService,
        centre: str,
        key: bytes,
        devices: Iterable[tuple[str, str]],
        influx: InfluxService | None = None,
    ) -> None:
        home.mkdir(parents=True, exist_ok=True)
        self.db_url = f"sqlite:///{home / 'registry.sqlite3'}"
        self.centre = centre
        self.key = key
        self.lock = threading.Lock()
        self.expected: dict[str, int] = {}  # pseudonym -> clinical seq, not opened yet
        self.opened: dict[int, float] = {}  # clinical seq -> monotonic first seen open
        self._central = central
        self.metrics_port = free_port()
        setup_registry(self.db_url, centre, devices)
        env = dict(os.environ)
        env.update(
            {
                "GRAMLINK_ALERTS_DB_URL": self.db_url,
                "GRAMLINK_ALERTS_MQTT_URL": central.url,
                "GRAMLINK_ALERTS_MQTT_USERNAME": central.admin_user,
                "GRAMLINK_ALERTS_MQTT_PASSWORD": central.admin_password,
                "GRAMLINK_ALERTS_CLIENT_ID": "bench-alerts",
                "GRAMLINK_ALERTS_INFLUX_URL": influx.url if influx is not None else "",
                "GRAMLINK_ALERTS_LOG_LEVEL": "warning",
                "GRAMLINK_ALERTS_METRICS_PORT": str(self.metrics_port),
            }
        )
        if influx is not None:
            env["GRAMLINK_ALERTS_INFLUX_DB"] = influx.database
            env["GRAMLINK_ALERTS_INFLUX_USER"] = influx.admin_user
            env["GRAMLINK_ALERTS_INFLUX_PASSWORD"] = influx.admin_password
        self.log = open(home / "alerts.log", "ab")  # noqa: SIM115 (closed in close())
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gramlink", "alerts", "run"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self._db = make_engine(self.db_url)
        self._sessions = session_factory(self._db)
        self._stop = threading.Event()
        self._poller = threading.Thread(target=self._poll, name="alerts-poll", daemon=True)
        self._poller.start()

    def evaluated(self) -> float:
        """Readings the engine evaluated so far (its ``/metrics``)."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as answer:
            for line in answer.read().decode().splitlines():
                if line.startswith(EVALUATED + " "):
                    return float(line.split()[1])
        return 0.0

    def caught_up(self, quiet_s: float = 3.0, timeout: float = 600.0) -> tuple[float, float]:
        """Wait until the engine evaluated nothing more for ``quiet_s``: (its count then,
        time.monotonic() of its last change)."""
        count, changed = self.evaluated(), time.monotonic()
        deadline = changed + timeout
        while time.monotonic() - changed < quiet_s and time.monotonic() < deadline:
            time.sleep(0.25)
            now = self.evaluated()
            if now != count:
                count, changed = now, time.monotonic()
        return count, changed

    def ref(self, seq: int) -> str:
        """The pseudonym of clinical reading ``seq``'s patient (as the gateway makes it)."""
        return pseudonymize(self.key, patient_id(seq))

    def expect(self, seq: int) -> None:
        """Clinical reading ``seq`` is about to be published: time its alert."""
        ref = self.ref(seq)
        with self.lock:
            self.expected[ref] = seq

    def _poll(self) -> None:
        while not self._stop.wait(POLL_S):
            with self.lock:
                refs = list(self.expected)
            if not refs:
                continue
            with self._sessions() as session:
                found = session.scalars(
                    select(Alert.patient_ref).where(
                        Alert.clinical.is_(True), Alert.patient_ref.in_(refs)
                    )
                ).all()
            now = time.monotonic()
            with self.lock:
                for ref in found:
                    seq = self.expected.pop(ref, None) if ref is not None else None
                    if seq is not None:
                        self.opened[seq] = now

    def warm_up(self, timeout: float = 60.0) -> None:
        """Publish a clinical envelope on the central broker until the engine opened its
        alert: the engine is subscribed and evaluating before the drain starts."""
        self.expect(-1)
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        client.username_pw_set(self._central.admin_user, self._central.admin_password)
        client.connect(self._central.bind, self._central.port)
        client.loop_start()
        ref = pseudonymize(self.key, patient_id(-1)).encode()
        gw = f"{self.centre}-gw"
        deadline = time.monotonic() + timeout
        n = 0
        try:
            while -1 not in self.opened:
                if self.proc.poll() is not None:
                    raise SystemExit(f"gramlink alerts exited ({self.proc.returncode})")
                if time.monotonic() > deadline:
                    raise SystemExit("the central alert engine never opened the warm-up alert")
                now = int(time.time() * 1000)
                payload = (
                    b'{"v":1,"kind":"pulse_oximeter","ts":%d,"seq":%d,"metrics":'
                    b'{"patient_ref":"%s","spo2_pct":85.0}}' % (now, n, ref)
                )
                record = [("telemetry", "oxi-warm", payload, now)]
                topic = f"gl/v1/{self.centre}/{gw}/_gateway/batch"
                client.publish(topic, encode_batch_parts(gw, 10**9 + n, record), qos=1)
                n += 1
                time.sleep(1.0)
        finally:
            client.disconnect()
            client.loop_stop()
        with self.lock:
            self.opened.pop(-1, None)

    def from_edge(self) -> int:
        """Clinical alerts of the benchmark's patients opened or stamped from the gateway's
        own alert (``edge_raised_ms`` set)."""
        with self._sessions() as session:
            return len(
                session.scalars(
                    select(Alert.id).where(
                        Alert.clinical.is_(True),
                        Alert.edge_raised_ms.is_not(None),
                        Alert.device == "oxi",
                    )
                ).all()
            )

    def reset(self) -> None:
        with self.lock:
            self.expected.clear()
            self.opened.clear()

    def close(self) -> None:
        self._stop.set()
        self._poller.join(5)
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self._db.dispose()
        self.log.close()
