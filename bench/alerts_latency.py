"""Alert detection latency: ``.venv/bin/python -m bench.alerts_latency [--rate N]``.

A Mosquitto of its own (temporary directory), a registry (SQLite) with the
default pack, one webhook channel, and the engine as it runs in the API
(:class:`api.alerts.service.AlertService`, its own persistent session). A
publisher plays ``--centres`` centres sending router and power readings straight
to the central broker at ``--rate`` readings/s in total, and among them, every
``--every`` seconds, an SpO2 of 85 for a new patient. Latency: from the publish
of that reading (just before it reaches the central broker) to the moment its
``firing`` notification was queued (``Notification.created_at``, set in the
engine's round, just before the commit). The webhook delivery after that is the
notify worker's (not part of this figure). Reports p50, p99 and max, and the
readings/s the engine evaluated meanwhile.
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import tempfile
import threading
import time
from datetime import UTC
from pathlib import Path

import paho.mqtt.client as mqtt
from prometheus_client import CollectorRegistry
from sqlalchemy import select

from api.alerts.metrics import EngineMetrics
from api.alerts.service import AlertService
from api.alerts.settings import AlertsSettings
from api.db.models import Notification, NotificationChannel
from api.db.session import make_engine, session_factory
from bench.alerts_engine import setup
from contract.codec import encode
from contract.messages import event, telemetry
from contract.metrics import PowerMetrics, PulseOximeterMetrics, RouterMetrics
from contract.topics import Channel, topic
from gramlink.services import MosquittoService
from gramlink.services.process import free_port


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--centres", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=500.0, help="background readings/s")
    parser.add_argument("--every", type=float, default=0.2, help="s between clinical readings")
    parser.add_argument("--duration", type=float, default=30.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        broker = MosquittoService(Path(tmp) / "mqtt", free_port(), secrets.token_urlsafe(16))
        broker.start()
        try:
            run(args, broker, f"sqlite:///{Path(tmp) / 'registry.sqlite'}")
        finally:
            broker.stop()


def run(args: argparse.Namespace, broker: MosquittoService, db_url: str) -> None:
    setup(db_url, args.centres)
    db = make_engine(db_url)
    sessions = session_factory(db)
    with sessions.begin() as s:
        s.add(NotificationChannel(name="bench", url="http://127.0.0.1:9/", secret="s" * 32))
    settings = AlertsSettings(
        db_url=db_url,
        mqtt_url=broker.url,
        mqtt_username=broker.admin_user,
        mqtt_password=broker.admin_password,
        client_id="bench-alerts",
        influx_url="",
    )
    metrics = EngineMetrics(CollectorRegistry())
    service = AlertService(settings, sessions, metrics)
    service.start()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.username_pw_set(broker.admin_user, broker.admin_password)
    client.max_inflight_messages_set(1000)
    client.connect(broker.bind, broker.port)
    client.loop_start()
    while not service.consumer.connected:
        time.sleep(0.05)
    time.sleep(0.5)  # the SUBACK
    sent: dict[str, float] = {}
    evaluated0 = service.engine.evaluated
    started = time.monotonic()
    t0 = time.time_ns() // 1_000_000
    seq = 0
    next_clinical = started
    i = 0
    interval = 1.0 / args.rate
    while time.monotonic() - started < args.duration:
        c = i % args.centres
        seq += 1
        ts = t0 + int((time.monotonic() - started) * 1000)
        if i % 2:
            body = telemetry("router", ts=ts, seq=seq, metrics=RouterMetrics(wan_up=True))
            client.publish(topic(f"c{c}", f"c{c}-rou", Channel.TELEMETRY), encode(body), qos=1)
        else:
            power = PowerMetrics(battery_soc_pct=70.0, grid_present=True)
            body = telemetry("power", ts=ts, seq=seq, metrics=power)
            client.publish(topic(f"c{c}", f"c{c}-pow", Channel.TELEMETRY), encode(body), qos=1)
        i += 1
        now = time.monotonic()
        if now >= next_clinical:
            ref = secrets.token_hex(32)
            metrics_ = PulseOximeterMetrics(spo2_pct=85.0, patient_ref=ref)
            reading = event("pulse_oximeter", ts=ts, seq=seq, name="spo2", metrics=metrics_)
            sent[ref] = time.time()
            client.publish(topic(f"c{c}", f"c{c}-pul", Channel.EVENT), encode(reading), qos=1)
            next_clinical = now + args.every
        time.sleep(max(0.0, started + i * interval - time.monotonic()))
    elapsed = time.monotonic() - started
    deadline = time.monotonic() + 30
    latencies: list[float] = []
    while time.monotonic() < deadline:
        with sessions() as s:
            rows = s.scalars(select(Notification).where(Notification.event == "firing")).all()
        found = {
            n.body["alert"]["patient_ref"]: n.created_at.replace(tzinfo=UTC).timestamp()
            for n in rows
        }
        if set(sent) <= set(found):
            latencies = [found[ref] - at for ref, at in sent.items()]
            break
        time.sleep(0.2)
    evaluated = service.engine.evaluated - evaluated0
    service.close()
    client.loop_stop()
    db.dispose()
    if not latencies:
        print(f"not every clinical reading was notified within 30 s ({len(sent)} sent)")
        return
    latencies.sort()
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    print(
        f"published {i / elapsed:,.0f} readings/s over {args.centres} centres for {elapsed:.0f} s; "
        f"engine evaluated {evaluated / elapsed:,.0f} readings/s\n"
        f"clinical readings {len(latencies)}: reading published -> notification queued "
        f"p50 {statistics.median(latencies) * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, "
        f"max {latencies[-1] * 1000:.0f} ms"
    )


if __name__ == "__main__":
    threading.current_thread().name = "bench"
    main()
