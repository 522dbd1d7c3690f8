"""Composition root of the API process: ``create_app(settings)`` and ``run(settings)``."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn
from fastapi import APIRouter, FastAPI
from fastapi_offline import FastAPIOffline
from sqlalchemy.orm import Session, sessionmaker

from api import errors
from api.accounting import SequenceAccounting
from api.broker_files import FileLogins
from api.db.session import make_engine, migrate, session_factory
from api.deps import Components
from api.dynsec import DynsecClient
from api.logins import CentralLogins, DynsecLogins
from api.metrics import ApiMetrics, MeasuredLogins
from api.presence import Presence
from api.routes import audit, centres, devices, health, sequences, telemetry, tokens
from api.sequence_feed import SequenceFeed
from api.services.provisioning import Provisioner
from api.settings import ApiSettings
from api.telemetry import TelemetryReader

log = logging.getLogger(__name__)
DESCRIPTION = """Registry, provisioning and telemetry reads of GramLink.

Authenticate with `Authorization: Bearer <token>` (`gramlink api create-token --role R`).
Errors are RFC 9457 `application/problem+json`.
"""
# Swagger UI and ReDoc load their scripts from here (fastapi-offline's copies),
# never from a CDN: a centre's machine may have no internet.
DOCS_ASSETS_URL = "/docs-assets"


def create_app(settings: ApiSettings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = make_engine(settings.db_url)
        migrate(engine)
        sessions = session_factory(engine)
        dynsec = DynsecClient(
            settings.mqtt_host,
            settings.mqtt_port,
            settings.mqtt_admin_user,
            settings.mqtt_admin_password.get_secret_value(),
            timeout=settings.mqtt_timeout_s,
            batch=settings.dynsec_batch,
        )
        dynsec.start()
        reader = TelemetryReader(
            settings.influx_url,
            settings.influx_db,
            settings.influx_user,
            settings.influx_password.get_secret_value(),
            settings.influx_timeout_s,
        )
        store = central_logins(settings, dynsec)
        master = settings.master_secret.get_secret_value().encode()
        provisioner = Provisioner(master, dynsec, MeasuredLogins(store, metrics))
        if isinstance(store, FileLogins):
            with sessions() as session:
                provisioner.rewrite_central(session, store)
        presence = None
        if settings.presence:
            presence = Presence(
                settings.mqtt_host,
                settings.mqtt_port,
                settings.mqtt_admin_user,
                settings.mqtt_admin_password.get_secret_value(),
                sessions,
                on_gateway_online=provisioner.seed_gateway,
            )
            presence.start()
        accounting = None
        if settings.sequence_interval_s:
            accounting = sequence_accounting(settings, sessions)
            accounting.register(metrics.registry)
            accounting.start()
        app.state.components = Components(settings, sessions, provisioner, reader)
        app.state.accounting = accounting
        app.state.presence = presence
        log.info(
            "event=api_started db=%s mqtt=%s", engine.url.render_as_string(True), settings.mqtt_url
        )
        try:
            yield
        finally:
            if accounting is not None:
                accounting.close()
                metrics.registry.unregister(accounting)
                accounting.feed.close()
            if presence is not None:
                presence.close()
            reader.close()
            dynsec.close()
            engine.dispose()

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
    for module in (centres, devices, telemetry, sequences, tokens, audit, health):
        for router in _routers(module):
            app.include_router(router)
    return app


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


def central_logins(settings: ApiSettings, dynsec: DynsecClient) -> CentralLogins:
    """The broker's own files when they are on this host, else dynamic security."""
    if settings.broker_files_dir is None or settings.broker_pid_file is None:
        return DynsecLogins(dynsec)
    return FileLogins(
        settings.broker_files_dir,
        settings.broker_pid_file,
        settings.mqtt_host,
        settings.mqtt_port,
        timeout=settings.mqtt_timeout_s,
    )


def _routers(module: object) -> list[APIRouter]:
    return [value for value in vars(module).values() if isinstance(value, APIRouter)]


def run(settings: ApiSettings) -> int:
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        # uvicorn's lines go through the handler runtime.logs.configure set up, at the
        # levels it set (uvicorn would otherwise raise its loggers back to INFO).
        log_config=None,
        log_level=None,
        access_log=settings.log_level == "debug",
    )
    return 0
