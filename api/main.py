"""Composition root of the API process: ``create_app(settings)`` and ``run(settings)``."""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import ExitStack, asynccontextmanager

import uvicorn
from fastapi import APIRouter, FastAPI
from fastapi_offline import FastAPIOffline
from sqlalchemy.orm import Session, sessionmaker

from api import errors
from api.accounting import SequenceAccounting
from api.alerts.metrics import EngineMetrics
from api.alerts.service import GC_THRESHOLDS as ALERT_ENGINE_GC
from api.alerts.service import AlertService
from api.alerts.settings import AlertsSettings
from api.alerts.webhook import DeliveryOptions, WebhookWorker
from api.broker import BrokerStartError
from api.broker_files import FileLogins
from api.campaign_metrics import CampaignMetrics
from api.campaign_runner import CampaignRunner
from api.centre_facts import CentreFacts, InfluxLines
from api.db.session import make_engine, migrate, session_factory
from api.deps import Components
from api.device_link import DeviceLink
from api.dynsec import DynsecClient
from api.firmware_store import FirmwareStore
from api.logins import CentralLogins, DynsecLogins
from api.metrics import ApiMetrics, MeasuredLogins
from api.presence import Presence
from api.routes import (
    alert_rules,
    alerts,
    audit,
    campaigns,
    centres,
    channels,
    commands,
    devices,
    firmware,
    health,
    sequences,
    silences,
    telemetry,
    tokens,
    twins,
)
from api.sequence_feed import SequenceFeed
from api.services import edge_rules
from api.services.provisioning import Provisioner
from api.settings import ApiSettings
from api.telemetry import TelemetryReader
from mqttlink.endpoint import TlsFileError
from mqttlink.paho_link import MqttLink
from mqttlink.reasons import Refusal
from runtime.collector import settle
from runtime.exits import ExitCode

log = logging.getLogger(__name__)
DESCRIPTION = """Registry, provisioning and telemetry reads of GramLink.

Authenticate with `Authorization: Bearer <token>` (`gramlink api create-token --role R`).
Errors are RFC 9457 `application/problem+json`.
"""
# Swagger UI and ReDoc load their scripts from here (fastapi-offline's copies),
# never from a CDN: a centre's machine may have no internet.
DOCS_ASSETS_URL = "/docs-assets"


def create_app(settings: ApiSettings, dynsec: DynsecClient | None = None) -> FastAPI:
    """The app; ``dynsec``: an admin session already up (``run`` connects it before
    serving, so a broker that is down stops the process with one line). Without
    one the lifespan connects its own and a failure raises ``BrokerStartError``."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        with ExitStack() as stack:
            engine = make_engine(settings.db_url)
            stack.callback(engine.dispose)
            migrate(engine)
            sessions = session_factory(engine)
            admin = dynsec
            if admin is None:
                admin = connect_dynsec(settings)
                stack.callback(admin.close)
            reader = TelemetryReader(
                settings.influx_url,
                settings.influx_db,
                settings.influx_user,
                settings.influx_password.get_secret_value(),
                settings.influx_timeout_s,
            )
            stack.callback(reader.close)
            store = central_logins(settings, admin)
            master = settings.master_secret.get_secret_value().encode()
            provisioner = Provisioner(master, admin, MeasuredLogins(store, metrics))
            if isinstance(store, FileLogins):
                with sessions() as session:
                    provisioner.rewrite_central(session, store)
            presence = device_link = None
            if settings.presence:
                presence = Presence(
                    settings.broker_access(),
                    sessions,
                    on_gateway_online=edge_rules.gateway_resync(provisioner),
                )
                presence.start()
                stack.callback(presence.close)
            if settings.presence or settings.campaign_interval_s:
                device_link = DeviceLink(
                    settings.broker_access(),
                    sessions,
                    rate_per_s=settings.command_rate_per_s,
                    interval=settings.command_sweep_s,
                )
                device_link.start()
                stack.callback(device_link.close)
            if settings.centre_facts_interval_s:
                start_centre_facts(settings, sessions, stack)
            accounting = None
            if settings.sequence_interval_s:
                accounting = sequence_accounting(settings, sessions)
                accounting.register(metrics.registry)
                stack.callback(accounting.feed.close)
                stack.callback(metrics.registry.unregister, accounting)
                accounting.start()
                stack.callback(accounting.close)
            engine_service = None
            if settings.alerts:
                engine_service = alert_service(settings, sessions, metrics)
                stack.callback(metrics.registry.unregister, engine_service.open_alerts)
                engine_service.start()
                stack.callback(engine_service.close)
            webhook = None
            if settings.notify:
                webhook = WebhookWorker(
                    sessions, DeliveryOptions.from_settings(settings), registry=metrics.registry
                )
                webhook.start()
                stack.callback(webhook.close)
                if engine_service is not None:
                    engine_service.on_notified = webhook.wake  # sent at once, not at the next poll
            app.state.webhook = webhook
            app.state.firmware_store = FirmwareStore(
                settings.firmware_dir, settings.firmware_max_bytes
            )
            app.state.campaigns = None
            if device_link is not None and settings.campaign_interval_s:
                app.state.campaigns = start_campaigns(
                    settings, sessions, device_link, metrics, stack
                )
            app.state.components = Components(settings, sessions, provisioner, reader, device_link)
            app.state.accounting = accounting
            app.state.presence = presence
            app.state.alerts = engine_service
            log.info(
                "event=api_started db=%s mqtt=%s",
                engine.url.render_as_string(True),
                settings.mqtt_url,
            )
            yield

    metrics = ApiMetrics()
    app = FastAPIOffline(
        title="GramLink API",
        version="1.0.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        static_url=DOCS_ASSETS_URL,
    )
    app.state.metrics = metrics
    app.middleware("http")(metrics.middleware)
    errors.install(app)
    routes = (
        centres,
        devices,
        telemetry,
        sequences,
        tokens,
        audit,
        health,
        commands,
        twins,
        firmware,
        campaigns,
    )
    alerting = (alert_rules, alerts, silences, channels)
    for module in routes + alerting:
        for router in _routers(module):
            app.include_router(router)
    return app


def start_centre_facts(
    settings: ApiSettings, sessions: sessionmaker[Session], stack: ExitStack
) -> CentreFacts:
    """The ``centres`` measurement writer (registry facts for the dashboards)."""
    influx = InfluxLines(
        settings.influx_url,
        settings.influx_db,
        settings.influx_user,
        settings.influx_password.get_secret_value(),
        settings.influx_timeout_s,
    )
    stack.callback(influx.close)
    facts = CentreFacts(sessions, influx, settings.centre_facts_interval_s)
    facts.watch()
    stack.callback(facts.unwatch)
    facts.start()
    stack.callback(facts.close)
    return facts


def start_campaigns(
    settings: ApiSettings,
    sessions: sessionmaker[Session],
    device_link: DeviceLink,
    metrics: ApiMetrics,
    stack: ExitStack,
) -> CampaignRunner:
    """The OTA campaign runner (thread ``campaign-runner``): its ``ota`` commands go
    through the command service and ``device_link``, which wakes it on acknowledgements."""
    counted = CampaignMetrics(metrics.registry, sessions)
    stack.callback(counted.close)
    runner = CampaignRunner(
        sessions,
        device_link,
        settings.firmware_base_url(),
        interval=settings.campaign_interval_s,
        max_sends=settings.campaign_max_sends,
        presence=settings.presence,
        metrics=counted,
    )
    device_link.on_acks = runner.wake
    runner.start()
    stack.callback(runner.close)
    return runner


def connect_dynsec(settings: ApiSettings) -> DynsecClient:
    """The admin session, up; ``BrokerStartError`` (one line, exit code) if not."""
    dynsec = DynsecClient(settings.broker_access(), batch=settings.dynsec_batch)
    dynsec.start()
    return dynsec


def sequence_accounting(
    settings: ApiSettings, sessions: sessionmaker[Session]
) -> SequenceAccounting:
    feed = SequenceFeed(
        settings.influx_url,
        settings.influx_db,
        settings.influx_user,
        settings.influx_password.get_secret_value(),
        settings.influx_timeout_s,
    )
    return SequenceAccounting(
        sessions,
        feed,
        interval_s=settings.sequence_interval_s,
        lag_s=settings.sequence_lag_s,
        grace_s=settings.sequence_grace_s,
        horizon_s=settings.sequence_horizon_s,
        check_after_s=settings.sequence_check_after_s,
    )


def alert_service(
    settings: ApiSettings, sessions: sessionmaker[Session], metrics: ApiMetrics
) -> AlertService:
    """The alert engine inside the API: ``GRAMLINK_ALERTS_*``, else the API's own settings."""
    engine_metrics = metrics.alerts
    if engine_metrics is None:
        engine_metrics = metrics.alerts = EngineMetrics(metrics.registry)
    service = AlertService(AlertsSettings.inside_api(settings), sessions, engine_metrics)
    metrics.registry.register(service.open_alerts)
    return service


def central_logins(settings: ApiSettings, dynsec: DynsecClient) -> CentralLogins:
    """The broker's own files when they are on this host, else dynamic security."""
    if settings.broker_files_dir is None or settings.broker_pid_file is None:
        return DynsecLogins(dynsec)
    return FileLogins(settings.broker_files_dir, settings.broker_pid_file, settings.broker_access())


def _routers(module: object) -> list[APIRouter]:
    return [value for value in vars(module).values() if isinstance(value, APIRouter)]


def run(settings: ApiSettings) -> int:
    """Connect to the broker, then serve; one line on stderr and an exit code if the
    broker is down (3), refuses the admin login (4) or a TLS file is bad (2) at start,
    or if a broker connection is refused for good while serving (4, or 5 when another
    process took its session)."""
    try:
        dynsec = connect_dynsec(settings)
    except BrokerStartError as exc:
        print(f"error: {exc.line}", file=sys.stderr)  # noqa: T201
        return exc.exit_code
    except TlsFileError as exc:
        print(f"error: setting {exc}", file=sys.stderr)  # noqa: T201
        return ExitCode.CONFIG
    app = create_app(settings, dynsec)
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=settings.host,
            port=settings.port,
            # uvicorn's lines go through the handler runtime.logs.configure set up, at the
            # levels it set (uvicorn would otherwise raise its loggers back to INFO).
            log_config=None,
            log_level=None,
            access_log=settings.log_level == "debug",
        )
    )
    watch = RefusalWatch(server, lambda: _links(app, dynsec), lambda: _failures(app))
    watch.start()
    if settings.alerts:
        settle(ALERT_ENGINE_GC)  # the engine's rounds run in this process
    try:
        server.run()
    finally:
        watch.stop()
        dynsec.close()
    if watch.refusal is not None:
        print(f"error: {watch.refusal.line}", file=sys.stderr)  # noqa: T201
        return watch.refusal.exit_code
    if watch.failure is not None:
        print(f"error: {watch.failure}", file=sys.stderr)  # noqa: T201
        return ExitCode.INTERNAL
    return ExitCode.OK if server.started else ExitCode.INTERNAL


def _links(app: FastAPI, dynsec: DynsecClient) -> list[MqttLink]:
    presence: Presence | None = getattr(app.state, "presence", None)
    engine_service: AlertService | None = getattr(app.state, "alerts", None)
    components = getattr(app.state, "components", None)
    device_link = components.devices if components is not None else None
    return (
        [dynsec.link]
        + ([presence.link] if presence is not None else [])
        + (engine_service.links if engine_service is not None else [])
        + ([device_link.link] if device_link is not None else [])
    )


def _failures(app: FastAPI) -> list[str | None]:
    """What ended a worker thread of the API on an error (the alert engine's)."""
    engine_service: AlertService | None = getattr(app.state, "alerts", None)
    return [engine_service.failure] if engine_service is not None else []


class RefusalWatch:
    """Stops the server when a broker connection ends for good, refused or failed, or
    a worker thread failed (thread ``refusal-watch``)."""

    def __init__(
        self,
        server: uvicorn.Server,
        links: Callable[[], list[MqttLink]],
        failures: Callable[[], list[str | None]] = list,
    ) -> None:
        self.refusal: Refusal | None = None
        self.failure: str | None = None
        self._server = server
        self._links = links
        self._failures = failures
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="refusal-watch", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.wait(0.25):
            for link in self._links():
                if link.refusal is not None or link.failure is not None:
                    self.refusal, self.failure = link.refusal, link.failure
                    self._server.should_exit = True
                    return
            for failure in self._failures():
                if failure is not None:
                    self.failure = failure
                    self._server.should_exit = True
                    return
