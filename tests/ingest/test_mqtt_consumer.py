"""Ingest's MQTT v5 consumer (``mqttlink.session`` over mqtt5) against real Mosquitto."""

from __future__ import annotations

import socket
import threading

import pytest

from ingest.app import Worker
from runtime.exits import ExitCode
from tests.factories import unique_id, wait_for
from tests.ingest.conftest import Publisher, count, distinct_seqs, now_ms, worker_settings


def test_readings_arrive_once_with_a_small_receive_maximum(mosquitto, influx, start_worker) -> None:
    """Few in flight: acknowledgements must flow batch after batch, or the stream stalls."""
    centre = unique_id("c")
    settings = worker_settings(mosquitto, influx, receive_maximum=40)
    start_worker(settings)
    pub = Publisher(mosquitto)
    n = pub.readings(centre, ["pw-1", "pw-2"], range(600), now_ms() - 60_000)
    n += pub.envelopes(centre, "gw-1", ["pw-3"], range(400), now_ms() - 60_000, per=50)
    pub.flush()
    pub.close()
    wait_for(lambda: count(influx, "power", centre) >= n, 60, "all readings stored")
    assert count(influx, "power", centre) == n
    assert len(distinct_seqs(influx, "power", centre)) == n


def test_wrong_password_stops_the_worker_loudly(mosquitto, influx) -> None:
    worker = Worker(worker_settings(mosquitto, influx, mqtt_password="not-the-password"))
    code: list[int] = []
    thread = threading.Thread(target=lambda: code.append(worker.run()), daemon=True)
    thread.start()
    thread.join(30)
    assert code == [ExitCode.REFUSED]
    line = worker.fatal or ""
    assert "refused us: 0x87 not authorized" in line
    assert "GRAMLINK_INGEST_MQTT_USERNAME / GRAMLINK_INGEST_MQTT_PASSWORD" in line


def test_broker_restart_reconnects_and_loses_nothing(broker_factory, influx, start_worker) -> None:
    broker = broker_factory()
    centre = unique_id("c")
    w = start_worker(worker_settings(broker, influx, receive_maximum=200))
    first_generation = w.worker.subscriber.generation
    pub = Publisher(broker)
    n = pub.readings(centre, ["pw-1"], range(0, 1500), now_ms() - 60_000)
    pub.flush()
    pub.close()
    broker.stop()  # possibly mid-stream: then the unacknowledged rest is redelivered
    broker.start()
    wait_for(lambda: w.worker.subscriber.generation > first_generation, 40, "reconnected")
    pub = Publisher(broker)
    n += pub.readings(centre, ["pw-1"], range(1500, 2000), now_ms() - 60_000)
    pub.flush()
    pub.close()
    wait_for(lambda: count(influx, "power", centre) >= n, 60, "all readings stored")
    assert len(distinct_seqs(influx, "power", centre)) == n
    assert w.worker.fatal is None


class FreezingProxy:
    """A TCP relay in front of the broker whose current connection can go silent (no FIN)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.frozen = threading.Event()
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            self.frozen.clear()  # a new connection works again
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                if self.frozen.is_set():
                    continue  # swallowed: the link went dark
                dst.sendall(data)
        except OSError:
            pass
        finally:
            src.close()
            if not self.frozen.is_set():  # a dark link tells the other side nothing
                dst.close()

    def close(self) -> None:
        self.listener.close()


def test_silent_link_detected_by_missing_pingresp_and_reconnected(
    mosquitto, influx, start_worker, caplog: pytest.LogCaptureFixture
) -> None:
    proxy = FreezingProxy(mosquitto.port)
    try:
        settings = worker_settings(mosquitto, influx, keepalive_s=5)
        settings = settings.model_copy(update={"mqtt_url": f"mqtt://127.0.0.1:{proxy.port}"})
        w = start_worker(settings)
        generation = w.worker.subscriber.generation
        proxy.frozen.set()
        wait_for(lambda: w.worker.subscriber.generation > generation, 30, "reconnected")
        assert proxy.connections >= 2
        assert any("no PINGRESP" in r.getMessage() for r in caplog.records)
        centre = unique_id("c")
        pub = Publisher(mosquitto)
        n = pub.readings(centre, ["pw-1"], range(50), now_ms() - 60_000)
        pub.flush()
        pub.close()
        wait_for(lambda: count(influx, "power", centre) >= n, 30, "stored after reconnect")
    finally:
        proxy.close()
