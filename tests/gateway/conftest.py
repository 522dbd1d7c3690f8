"""Gateway fixtures: a local and a central Mosquitto, a gateway run in-process."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.app import Gateway
from gateway.settings import GatewaySettings
from gramlink.services import MosquittoService
from tests.factories import unique_id

KEY = "test-centre-key-" + "k" * 16

GatewayFactory = Callable[..., Gateway]


@pytest.fixture(scope="session")
def local_broker(broker_factory: Callable[..., MosquittoService]) -> MosquittoService:
    """The centres' local broker shared by tests that do not stop it (unique centre each):
    exactly the shipped centre configuration (``gramlink centre-broker install``)."""
    return broker_factory(centre=True)


@pytest.fixture
def centre() -> str:
    return unique_id("c")


def settings_for(
    centre: str, local: MosquittoService, central: MosquittoService, data_dir: Path, **extra: Any
) -> GatewaySettings:
    values: dict[str, Any] = {
        "centre": centre,
        "local_url": local.url,
        "local_username": local.admin_user,
        "local_password": local.admin_password,
        "uplink_url": central.url,
        "uplink_username": central.admin_user,
        "uplink_password": central.admin_password,
        "data_dir": data_dir,
        "pseudonym_key": KEY,
        "batch_max_age_ms": 100,
        "backoff_min_s": 0.2,
        "backoff_max_s": 2.0,
        "health_interval_s": 3600,
    }
    values.update(extra)
    return GatewaySettings(**values)


@pytest.fixture
def make_gateway(tmp_path: Path) -> Iterator[GatewayFactory]:
    started: list[Gateway] = []

    def make(
        centre: str, local: MosquittoService, central: MosquittoService, **extra: Any
    ) -> Gateway:
        data_dir = extra.pop("data_dir", tmp_path / "gw")
        gw = Gateway(settings_for(centre, local, central, data_dir, **extra))
        gw.start()
        started.append(gw)
        return gw

    yield make
    for gw in reversed(started):
        gw.stop()
