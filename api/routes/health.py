"""``/healthz``: liveness without a token."""

from __future__ import annotations

from fastapi import APIRouter
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
