"""``/healthz`` and ``/metrics``: liveness and Prometheus metrics, without a token."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel

from api.deps import Parts

router = APIRouter(tags=["health"])


class Health(BaseModel):
    status: str
    broker_connected: bool


@router.get("/healthz", summary="Is the API up and connected to the broker")
def health(parts: Parts) -> Health:
    connected = parts.provisioner.dynsec.connected()
    return Health(status="ok" if connected else "degraded", broker_connected=connected)


@router.get("/metrics", summary="Prometheus metrics (requests, latency, broker login changes)")
def metrics(request: Request) -> Response:
    return request.app.state.metrics.render()  # type: ignore[no-any-return]
