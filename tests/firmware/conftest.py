"""Fixtures of the firmware and campaign tests: an API served over real HTTP (devices
and gateways download from it), provisioned simulated routers, firmware uploads."""

from __future__ import annotations

import io
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from api.campaign_runner import CampaignRunner
from api.firmware_store import FirmwareStore
from api.main import create_app
from api.schemas import Role
from api.services.tokens import create_token
from api.settings import ApiSettings
from firmware_sim.fleet import Fleet, FleetConfig
from gramlink.services import InfluxService, MosquittoService
from gramlink.services.process import bound_socket, wait_until
from tests.api.conftest import MASTER
from tests.factories import unique_id

ROUTER_MODEL = "GL-R4G"  # firmware_sim.devices.router.Router.model


@dataclass
class LiveApi:
    url: str
    app: FastAPI
    settings: ApiSettings
    broker: MosquittoService
    tokens: dict[Role, str] = field(default_factory=dict)
    stop: Callable[[], None] = lambda: None

    def headers(self, role: Role = Role.ADMIN) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}"}

    @property
    def http(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30)

    @property
    def store(self) -> FirmwareStore:
        found: FirmwareStore = self.app.state.firmware_store
        return found

    @property
    def runner(self) -> CampaignRunner:
        found: CampaignRunner = self.app.state.campaigns
        return found

    def provision_routers(
        self, centres: list[str], fw: str = "1.0.0", **centre_facts: object
    ) -> dict[str, tuple[str, str]]:
        """One router per centre (``{centre}-rtr1``, as the simulator names it); logins."""
        extra = "".join(f",{k}" for k in centre_facts)
        values = "".join(f",{v}" for v in centre_facts.values())
        lines = [f"centre_id,centre_name,device_id,kind,model,firmware_version{extra}"]
        lines += [f"{c},Centre {c},{c}-rtr1,router,{ROUTER_MODEL},{fw}{values}" for c in centres]
        with self.http as http:
            answer = http.post(
                "/v1/devices/bulk", content="\n".join(lines) + "\n", headers=self.headers()
            )
        assert answer.status_code == 201, answer.text
        return {
            r["device_id"]: (r["username"], r["password"]) for r in answer.json()["credentials"]
        }

    def upload(
        self, version: str, data: bytes, kind: str = "router", model: str = ROUTER_MODEL
    ) -> dict[str, Any]:
        with self.http as http:
            answer = http.post(
                "/v1/firmware",
                data={"kind": kind, "model": model, "version": version},
                files={"file": (f"fw-{version}.bin", io.BytesIO(data))},
                headers=self.headers(),
            )
        assert answer.status_code == 201, answer.text
        body: dict[str, Any] = answer.json()
        return body

    def campaign(self, **body: Any) -> dict[str, Any]:
        with self.http as http:
            answer = http.post("/v1/campaigns", json=body, headers=self.headers())
        assert answer.status_code == 201, answer.text
        result: dict[str, Any] = answer.json()
        return result

    def get_campaign(self, campaign_id: int) -> dict[str, Any]:
        with self.http as http:
            answer = http.get(f"/v1/campaigns/{campaign_id}", headers=self.headers(Role.VIEWER))
        assert answer.status_code == 200, answer.text
        result: dict[str, Any] = answer.json()
        return result


LiveApiFactory = Callable[..., LiveApi]
RouterFactory = Callable[..., Fleet]


@pytest.fixture
def live_api_factory(
    tmp_path: Path, mosquitto: MosquittoService, influx: InfluxService
) -> Iterator[LiveApiFactory]:
    servers: list[tuple[uvicorn.Server, threading.Thread]] = []

    def make(port: int | None = None, **extra: Any) -> LiveApi:
        sock = bound_socket(port=port or 0)  # bound before the server runs: no port race
        port = int(sock.getsockname()[1])
        values: dict[str, Any] = {
            "broker_files_dir": mosquitto.home,
            "mqtt_url": mosquitto.url,
            "mqtt_admin_password": mosquitto.admin_password,
            "db_url": f"sqlite:///{tmp_path / unique_id('api')}.sqlite",
            "influx_url": influx.url,
            "influx_password": influx.admin_password,
            "master_secret": MASTER,
            "port": port,
            "firmware_dir": tmp_path / unique_id("fw"),
            "campaign_interval_s": 0.2,
            "sequence_interval_s": 0,
            "centre_facts_interval_s": 0,
            "notify": False,
        }
        values.update(extra)
        settings = ApiSettings(**values)
        app = create_app(settings)
        server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", log_config=None)
        )
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name="live-api", daemon=True
        )
        thread.start()
        servers.append((server, thread))
        wait_until(lambda: server.started, 60, "the API")

        def stop() -> None:
            server.should_exit = True
            thread.join(timeout=20)

        live = LiveApi(f"http://127.0.0.1:{port}", app, settings, mosquitto, stop=stop)
        with app.state.components.sessions.begin() as session:
            live.tokens = {role: create_token(session, role, f"t-{role.value}") for role in Role}
        return live

    yield make
    for server, thread in reversed(servers):
        server.should_exit = True
        thread.join(timeout=20)


@pytest.fixture
def routers(mosquitto: MosquittoService) -> Iterator[RouterFactory]:
    """Simulated routers (one per centre) with their own logins, on the central broker."""
    fleets: list[Fleet] = []

    def make(logins: dict[str, tuple[str, str]], **options: Any) -> Fleet:
        centres = tuple(sorted({device.rsplit("-", 1)[0] for device in logins}))
        config: dict[str, Any] = {
            "port": mosquitto.port,
            "centre_ids": centres,
            "devices_per_centre": 1,
            "credentials": logins,
            "interval_s": 3600,
            "will_delay_s": 1,
            "ota_timeout_s": 10.0,
            # Longer than a test run: Mosquitto 2.0.11 has segfaulted while expiring dozens
            # of these sessions at once (tests/conftest.py, shared_brokers_alive).
            "session_expiry_s": 3600,
        }
        config.update(options)
        fleet = Fleet(FleetConfig(**config))
        fleets.append(fleet)
        fleet.start()
        assert fleet.wait_connected(30), "routers did not connect"
        return fleet

    yield make
    for fleet in fleets:
        fleet.stop()
