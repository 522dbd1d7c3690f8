"""Debian's InfluxDB 1.6 (``influxd``) with authentication on and one database.

The first start creates the admin user (InfluxDB allows that one unauthenticated
statement while no user exists) and the database; later starts reuse both.
"""

from __future__ import annotations

import shutil
import signal
from pathlib import Path
from typing import Final

import httpx

from gramlink.services.process import PidProcess, ServiceError, free_port, port_in_use, wait_until

ADMIN_USER: Final = "admin"
DEFAULT_DATABASE: Final = "gramlink"


class InfluxService:
    """One ``influxd``: config, data, log and PID file under ``home``."""

    def __init__(
        self,
        home: Path,
        port: int,
        admin_password: str,
        bind: str = "127.0.0.1",
        database: str = DEFAULT_DATABASE,
    ) -> None:
        self.home = home
        self.port = port
        self.bind = bind
        self.database = database
        self.admin_user = ADMIN_USER
        self.admin_password = admin_password
        self.config_file = home / "influxdb.conf"
        self.process = PidProcess(
            "influxd", home / "influxd.pid", str(self.config_file), home / "influxd.log"
        )

    @property
    def url(self) -> str:
        return f"http://{self.bind}:{self.port}"

    def running(self) -> bool:
        return self.process.running()

    def start(self, timeout: float = 60.0) -> None:
        if self.running():
            return
        if port_in_use(self.bind, self.port):
            raise ServiceError(f"port {self.port} is already in use (influxd)")
        binary = shutil.which("influxd") or "/usr/bin/influxd"
        if not Path(binary).exists():
            raise ServiceError("influxd not found (apt-get install influxdb)")
        self.home.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(self._config(rpc_port=free_port(self.bind)))
        self.process.spawn([binary, "-config", str(self.config_file)])
        wait_until(self._ready, timeout, f"influxd on port {self.port}")
        self._bootstrap()

    def stop(self, timeout: float = 30.0) -> bool:
        return self.process.stop(timeout)

    def kill(self) -> bool:
        return self.process.stop(timeout=5.0, sig=signal.SIGKILL)

    def answers(self) -> bool:
        try:
            return httpx.get(f"{self.url}/ping", timeout=2.0).status_code == 204
        except httpx.HTTPError:
            return False

    def query(self, q: str, *, database: str | None = None, method: str = "GET") -> dict:  # type: ignore[type-arg]
        """Run InfluxQL as the admin; raise ServiceError on an error answer."""
        params = {"q": q, "u": self.admin_user, "p": self.admin_password, "epoch": "ns"}
        if database:
            params["db"] = database
        response = httpx.request(method, f"{self.url}/query", params=params, timeout=30.0)
        body = response.json() if response.content else {}
        if response.status_code >= 400 or "error" in body:
            raise ServiceError(f"influx query failed ({response.status_code}): {body}")
        for result in body.get("results", []):
            if "error" in result:
                raise ServiceError(f"influx query failed: {result['error']}")
        return body  # type: ignore[no-any-return]

    def _ready(self) -> bool:
        failure = self.process.exited_early()
        if failure is not None:
            raise ServiceError(f"influxd exited at start: {failure}")
        return self.answers()

    def _bootstrap(self) -> None:
        # Allowed without credentials only while no user exists; afterwards it
        # answers 401 and the admin we created earlier is used.
        response = httpx.post(
            f"{self.url}/query",
            params={
                "q": f"CREATE USER \"{ADMIN_USER}\" WITH PASSWORD '{self.admin_password}' "
                "WITH ALL PRIVILEGES"
            },
            timeout=30.0,
        )
        if response.status_code not in (200, 401, 403):
            raise ServiceError(f"influx bootstrap failed ({response.status_code})")
        self.query(f'CREATE DATABASE "{self.database}"', method="POST")

    def _config(self, rpc_port: int) -> str:
        return f"""# written by gramlink; home {self.home}
reporting-disabled = true
bind-address = "{self.bind}:{rpc_port}"

[meta]
  dir = "{self.home}/meta"

[data]
  dir = "{self.home}/data"
  wal-dir = "{self.home}/wal"
  query-log-enabled = false
  index-version = "inmem"

[monitor]
  store-enabled = false

[http]
  enabled = true
  bind-address = "{self.bind}:{self.port}"
  auth-enabled = true
  log-enabled = false
  write-tracing = false
  max-body-size = 52428800

[continuous_queries]
  enabled = true
  log-enabled = false

[logging]
  level = "warn"
"""
