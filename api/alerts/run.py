"""``gramlink alerts``: the alert engine as a process of its own (composition root).

Runs until SIGTERM/SIGINT (exit 0), or until the broker refuses it for good:
its login (4), one of its two client ids (``GRAMLINK_ALERTS_CLIENT_ID`` and
the same with ``-edge``) taken by another engine (5: on one machine the
engine is one process, so turn ``GRAMLINK_API_ALERTS`` off where it runs
alone). A broker that does not answer within ``START_WAIT_S`` at start is 3;
later outages are ridden out (the session keeps what arrives meanwhile).
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from typing import Final

from prometheus_client import CollectorRegistry, start_http_server

from api.alerts.metrics import EngineMetrics
from api.alerts.service import GC_THRESHOLDS, AlertService
from api.alerts.settings import AlertsSettings
from api.db.session import make_engine, migrate, session_factory
from mqttlink.endpoint import TlsFileError
from runtime.collector import settle
from runtime.exits import ExitCode
from runtime.logs import kv

log = logging.getLogger(__name__)
START_WAIT_S: Final = 30.0
WATCH_S: Final = 0.25


def run(settings: AlertsSettings) -> int:
    engine = make_engine(settings.db_url)
    try:
        migrate(engine)
        sessions = session_factory(engine)
        registry = CollectorRegistry(auto_describe=True)
        metrics = EngineMetrics(registry)
        try:
            service = AlertService(settings, sessions, metrics)
        except TlsFileError as exc:
            print(f"error: setting {exc}", file=sys.stderr)  # noqa: T201
            return ExitCode.CONFIG
        registry.register(service.open_alerts)
        if settings.metrics_port:
            start_http_server(settings.metrics_port, settings.metrics_addr, registry)
        stop = threading.Event()
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, lambda *_: stop.set())
            signal.signal(signal.SIGINT, lambda *_: stop.set())
        service.start()
        settle(GC_THRESHOLDS)  # after the states are loaded: they live as long as we do
        try:
            return _watch(service, stop)
        finally:
            service.close()
    finally:
        engine.dispose()


def _watch(service: AlertService, stop: threading.Event) -> int:
    deadline = time.monotonic() + START_WAIT_S
    for link in service.links:  # the bulk session, then the edge one
        if not link.connected.wait(max(deadline - time.monotonic(), 0.0)) and link.refusal is None:
            line = f"the MQTT broker at {link.url} did not answer in {START_WAIT_S:g} s"
            print(f"error: {line} ({link.last_failure or 'no answer'})", file=sys.stderr)  # noqa: T201
            return ExitCode.DEPENDENCY_DOWN
    ids = ",".join(link.options.client_id for link in service.links)
    log.info(kv("alert_engine_started", client_id=ids, url=service.link.url))
    while not stop.wait(WATCH_S):
        for link in service.links:
            if link.refusal is not None:
                print(f"error: {link.refusal.line}", file=sys.stderr)  # noqa: T201
                return link.refusal.exit_code
            if link.failure is not None:
                print(f"error: {link.failure}", file=sys.stderr)  # noqa: T201
                return ExitCode.INTERNAL
        if not service.alive:
            why = service.failure or "the alert engine's thread ended"
            print(f"error: {why}", file=sys.stderr)  # noqa: T201
            return ExitCode.INTERNAL
    log.info(kv("alert_engine_stopped", **service.engine.describe()))
    return ExitCode.OK
