"""Fixtures of the API tests: a real PostgreSQL (Debian's 15), an API app on
SQLite or PostgreSQL against the session's real Mosquitto and InfluxDB, and tokens
of every role."""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from api.schemas import Role
from api.services.tokens import create_token
from api.settings import ApiSettings
from firmware_sim.fleet import Fleet, FleetConfig
from gramlink.services import InfluxService, MosquittoService
from gramlink.services.process import free_port, wait_until
from tests.factories import unique_id

PG_BIN = Path("/usr/lib/postgresql/15/bin")
MASTER = "m" * 8 + secrets.token_urlsafe(32)


@dataclass
class Postgres:
    host: str
    port: int
    user: str

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://{self.user}@/{database}?host={self.host}&port={self.port}"

    def create_database(self) -> str:
        name = "t_" + secrets.token_hex(6)
        self._psql(f'CREATE DATABASE "{name}"')
        return name

    def _psql(self, sql: str) -> None:
        subprocess.run(
            _as_owner(
                [
                    str(PG_BIN / "psql"),
                    "-h",
                    self.host,
                    "-p",
                    str(self.port),
                    "-U",
                    self.user,
                    "-d",
                    "postgres",
                    "-v",
                    "ON_ERROR_STOP=1",
                    "-c",
                    sql,
                ]
            ),
            check=True,
            capture_output=True,
            timeout=30,
        )


def _owner() -> str | None:
    """initdb refuses root: run PostgreSQL as the ``postgres`` account then."""
    if os.geteuid() != 0:
        return None
    pwd.getpwnam("postgres")
    return "postgres"


def _as_owner(argv: list[str]) -> list[str]:
    owner = _owner()
    return ["runuser", "-u", owner, "--", *argv] if owner else argv


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    if not (PG_BIN / "initdb").exists():
        pytest.fail("PostgreSQL 15 is not installed (apt-get install postgresql)")
    # Not under pytest's tmp dir: that one is 0700 for root, and PostgreSQL runs as
    # ``postgres`` when the tests run as root.
    home = Path(tempfile.mkdtemp(prefix="gl-pg-"))
    data, sockets = home / "data", home / "run"
    sockets.mkdir()
    owner = _owner()
    if owner:
        shutil.chown(home, owner)
        shutil.chown(sockets, owner)
    user = owner or pwd.getpwuid(os.geteuid()).pw_name
    subprocess.run(
        _as_owner(
            [
                str(PG_BIN / "initdb"),
                "-D",
                str(data),
                "-U",
                user,
                "-A",
                "trust",
                "--no-sync",
                "-E",
                "UTF8",
            ]
        ),
        check=True,
        capture_output=True,
        timeout=120,
    )
    port = free_port()
    options = (
        f"-k {sockets} -p {port} -c listen_addresses='' -c fsync=off "
        "-c full_page_writes=off -c synchronous_commit=off"
    )
    subprocess.run(
        _as_owner(
            [
                str(PG_BIN / "pg_ctl"),
                "-D",
                str(data),
                "-l",
                str(home / "pg.log"),
                "-o",
                options,
                "-w",
                "-t",
                "60",
                "start",
            ]
        ),
        check=True,
        capture_output=True,
        timeout=90,
    )
    pg = Postgres(str(sockets), port, user)
    wait_until(lambda: (sockets / f".s.PGSQL.{port}").exists(), 30, "postgres socket")
    yield pg
    subprocess.run(
        _as_owner([str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"]),
        check=False,
        capture_output=True,
        timeout=60,
    )
    shutil.rmtree(home, ignore_errors=True)


@dataclass
class Api:
    client: TestClient
    settings: ApiSettings
    tokens: dict[Role, str]
    broker: MosquittoService

    def headers(self, role: Role = Role.ADMIN) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}"}

    def post_device(self, centre: str, device: str, kind: str = "thermometer") -> httpx.Response:
        """Provision a device as admin; the answer carries its credentials (once)."""
        body = {"id": device, "centre_id": centre, "kind": kind, "model": "m1"}
        return self.client.post("/v1/devices", json=body, headers=self.headers())

    def centre(self, **extra: object) -> str:
        centre_id = unique_id("c")
        body = {"id": centre_id, "name": f"Centre {centre_id}", **extra}
        response = self.client.post("/v1/centres", json=body, headers=self.headers())
        assert response.status_code == 201, response.text
        return centre_id


ApiFactory = Callable[..., Api]


@pytest.fixture
def api_factory(
    tmp_path: Path, mosquitto: MosquittoService, influx: InfluxService
) -> Iterator[ApiFactory]:
    opened: list[TestClient] = []

    def make(
        db_url: str | None = None,
        broker: MosquittoService | None = None,
        logins: str = "files",
        **extra: object,
    ) -> Api:
        """``extra``: more settings (e.g. ``mqtt_url`` of a TLS listener, ``mqtt_ca_file``)."""
        broker = broker or mosquitto
        files = {"broker_files_dir": broker.home} if logins == "files" else {}
        settings = ApiSettings(  # type: ignore[arg-type]
            **files,
            # the alert engine only where a test asks for it (tests/alerts)
            **{"mqtt_url": broker.url, "alerts": False, **extra},
            db_url=db_url or f"sqlite:///{tmp_path / unique_id('api')}.sqlite",
            mqtt_admin_password=broker.admin_password,
            influx_url=influx.url,
            influx_password=influx.admin_password,
            master_secret=MASTER,
        )
        client = TestClient(create_app(settings), raise_server_exceptions=False)
        client.__enter__()
        opened.append(client)
        sessions = client.app.state.components.sessions  # type: ignore[attr-defined]
        with sessions.begin() as session:
            tokens = {role: create_token(session, role, f"test-{role.value}") for role in Role}
        return Api(client, settings, tokens, broker)

    yield make
    for client in reversed(opened):
        client.__exit__(None, None, None)


@pytest.fixture
def api(api_factory: ApiFactory) -> Api:
    """An API on SQLite against the session's central broker and InfluxDB."""
    return api_factory()


@pytest.fixture(params=["sqlite", "postgresql"])
def registry_api(request: pytest.FixtureRequest, api_factory: ApiFactory) -> Api:
    """The same API on SQLite and on PostgreSQL (registry tests run on both)."""
    if request.param == "sqlite":
        return api_factory()
    pg: Postgres = request.getfixturevalue("postgres")
    return api_factory(pg.url(pg.create_database()))


DeviceFleet = Callable[..., Fleet]


@pytest.fixture
def device_fleet() -> Iterator[DeviceFleet]:
    """``make(broker, [(centre, device, kind)], credentials={device: (user, password)})``:
    a started fleet of exactly those devices (the broker's admin login when no credentials)."""
    fleets: list[Fleet] = []

    def make(
        broker: MosquittoService,
        roster: list[tuple[str, str, str]],
        credentials: dict[str, tuple[str, str]] | None = None,
        **extra: Any,
    ) -> Fleet:
        options: dict[str, Any] = {
            "port": broker.port,
            "roster": tuple(roster),
            "credentials": credentials or {},
            "username": None if credentials else broker.admin_user,
            "password": None if credentials else broker.admin_password,
            "interval_s": 60,
            "will_delay_s": 1,
            # Longer than a test run: Mosquitto 2.0.11 has segfaulted while expiring dozens
            # of these sessions at once (tests/conftest.py, shared_brokers_alive).
            "session_expiry_s": 3600,
        }
        options.update(extra)
        fleet = Fleet(FleetConfig(**options))
        fleets.append(fleet)
        fleet.start()
        assert fleet.wait_connected(15), "devices did not connect"
        return fleet

    yield make
    for fleet in fleets:
        fleet.stop(drain_s=2)
