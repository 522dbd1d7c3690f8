"""Prometheus metrics of the API process, on its own registry (no global state).

Served at ``GET /metrics`` without a token, like ``/healthz``: counts and
latencies only, labelled by route template (``/v1/devices/{device_id}``), never
by an id, a token or a centre.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable

from fastapi import Request, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)

from api.alerts.metrics import EngineMetrics
from api.logins import CentralLogins, LoginChange

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class ApiMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "gramlink_api_requests",
            "HTTP requests answered",
            ["method", "route", "status"],
            registry=r,
        )
        self.request_seconds = Histogram(
            "gramlink_api_request_seconds",
            "time to answer one HTTP request",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.login_changes = Counter(
            "gramlink_api_login_changes", "logins changed on the central broker", registry=r
        )
        self.login_apply_seconds = Histogram(
            "gramlink_api_login_apply_seconds",
            "time until the central broker enforced one change set",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.login_failures = Counter(
            "gramlink_api_login_failures", "change sets the central broker did not take", registry=r
        )
        self.alerts: EngineMetrics | None = None  # the alert engine's, once it started here

    async def middleware(
        self, request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        started = time.perf_counter()
        status = 500
        try:
            response = await call_next(request)
            status = response.status_code
            return response
        finally:
            route = request.scope.get("route")
            template = getattr(route, "path", "unmatched")
            self.requests.labels(request.method, template, str(status)).inc()
            self.request_seconds.labels(request.method, template).observe(
                time.perf_counter() - started
            )

    def render(self) -> Response:
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)


class MeasuredLogins:
    """Wraps a login store: how long the broker took, and how often it failed."""

    def __init__(self, store: CentralLogins, metrics: ApiMetrics) -> None:
        self.store = store
        self._metrics = metrics

    def apply(self, changes: list[LoginChange]) -> None:
        started = time.perf_counter()
        try:
            self.store.apply(changes)
        except Exception:
            self._metrics.login_failures.inc()
            raise
        self._metrics.login_apply_seconds.observe(time.perf_counter() - started)
        self._metrics.login_changes.inc(len(changes))

    def undo(self, changes: Iterable[LoginChange]) -> None:
        self.store.undo(changes)
