"""Prometheus metrics of one worker, on its own registry (no global state).

Also rendered as one ``contract.storage.PIPELINE_MEASUREMENT`` line that the
worker writes to InfluxDB every ``pipeline_interval_s`` for the dashboards.
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from contract.storage import PIPELINE_MEASUREMENT


class IngestMetrics:
    def __init__(self, worker: str) -> None:
        self.worker = worker
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.messages = Counter("gramlink_ingest_messages", "MQTT messages received", registry=r)
        self.readings = Counter("gramlink_ingest_readings", "readings decoded", registry=r)
        self.points = Counter(
            "gramlink_ingest_points_written", "points InfluxDB accepted", registry=r
        )
        self.quarantined = Counter(
            "gramlink_ingest_quarantined", "readings/messages quarantined", ["reason"], registry=r
        )
        self.retries = Counter(
            "gramlink_ingest_write_retries", "write attempts retried", registry=r
        )
        self.write_seconds = Histogram(
            "gramlink_ingest_write_seconds",
            "latency of one successful InfluxDB write",
            buckets=(0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )
        self.batch_lines = Histogram(
            "gramlink_ingest_batch_lines",
            "lines per batch",
            buckets=(1, 10, 100, 500, 1000, 2000, 5000, 10000, 20000),
            registry=r,
        )
        self.writer_wait = Counter(
            "gramlink_ingest_writer_wait_seconds",
            "time the decode thread waited for a free writer (all write_concurrency busy)",
            registry=r,
        )
        self.receipts = Counter(
            "gramlink_ingest_receipts",
            "storage receipts to gateways, by outcome (sent, delivered, undelivered, skipped)",
            ["outcome"],
            registry=r,
        )
        self.unacked = Gauge(
            "gramlink_ingest_unacked", "messages received and not yet acknowledged", registry=r
        )
        self.subscribed = Gauge(
            "gramlink_ingest_subscribed",
            "1 while connected with the subscriptions granted",
            registry=r,
        )
        self.last_message = time.monotonic()
        self.started = time.monotonic()
        Gauge(
            "gramlink_ingest_seconds_since_last_message",
            "liveness: seconds since the last MQTT message",
            registry=r,
        ).set_function(self.seconds_since_last_message)

    def seconds_since_last_message(self) -> float:
        return time.monotonic() - self.last_message

    def serve(self, port: int, addr: str = "127.0.0.1") -> None:
        """Expose /metrics on ``port`` (0: not served)."""
        if port:
            start_http_server(port, addr=addr, registry=self.registry)

    def pipeline_line(self, now_ns: int) -> str:
        quarantined = sum(
            sample.value
            for metric in self.quarantined.collect()
            for sample in metric.samples
            if sample.name.endswith("_total")
        )
        writes = sum(
            sample.value
            for metric in self.write_seconds.collect()
            for sample in metric.samples
            if sample.name.endswith("_count")
        )
        write_seconds = sum(
            sample.value
            for metric in self.write_seconds.collect()
            for sample in metric.samples
            if sample.name.endswith("_sum")
        )
        return (
            f"{PIPELINE_MEASUREMENT},worker={self.worker} "
            f"messages={int(self.messages._value.get())}i,"
            f"readings={int(self.readings._value.get())}i,"
            f"points_written={int(self.points._value.get())}i,"
            f"quarantined={int(quarantined)}i,"
            f"retries={int(self.retries._value.get())}i,"
            f"unacked={int(self.unacked._value.get())}i,"
            f"writes={int(writes)}i,"
            f"write_seconds_sum={write_seconds:.6f},"
            f"seconds_since_last_message={self.seconds_since_last_message():.3f} {now_ns}"
        )
