"""The local stack: one Mosquitto and one InfluxDB under a home directory.

``home/credentials.json`` (mode 0600) holds the generated admin passwords and the
passwords of the ingest workers' and the alert engine's own broker accounts
(``gramlink.broker_accounts``);
``home/stack.json`` records the ports so ``status`` and ``down`` need no options.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gramlink.broker_accounts import (
    AccountError,
    DynsecSession,
    alerts_account,
    ensure_account,
    ingest_account,
)
from gramlink.services import InfluxService, MosquittoService, ServiceError

DEFAULT_HOME = Path(".gramlink")
DEFAULT_MQTT_PORT = 1883
DEFAULT_INFLUX_PORT = 8086
INGEST_USER = "ingest"
ALERTS_USER = "alerts"


@dataclass(frozen=True)
class Credentials:
    mqtt_admin_password: str  # the dynsec admin: the API's login
    influx_admin_password: str
    mqtt_ingest_password: str  # the ingest workers' service account (broker_accounts)
    mqtt_alerts_password: str  # the alert engine's service account

    @classmethod
    def load_or_create(cls, home: Path) -> Credentials:
        """Read ``home/credentials.json``, creating it or adding what an older one lacks."""
        path = home / "credentials.json"
        data: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
        fields = [name for name in cls.__dataclass_fields__ if name not in data]
        for name in fields:
            data[name] = secrets.token_urlsafe(24)
        if fields:
            home.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as out:
                json.dump(data, out, indent=1)
            os.replace(tmp, path)
        return cls(**{name: data[name] for name in cls.__dataclass_fields__})


class Stack:
    """The services of one home directory."""

    def __init__(
        self,
        home: Path = DEFAULT_HOME,
        mqtt_port: int | None = None,
        influx_port: int | None = None,
        bind: str = "127.0.0.1",
    ) -> None:
        self.home = home.resolve()
        recorded = self._recorded_ports()
        if (self.home / "mosquitto" / "mosquitto.pid").exists():
            # A running stack keeps the ports it was started with.
            mqtt_port = influx_port = None
        self.mqtt_port = mqtt_port or recorded.get("mqtt_port", DEFAULT_MQTT_PORT)
        self.influx_port = influx_port or recorded.get("influx_port", DEFAULT_INFLUX_PORT)
        self.bind = bind
        self.credentials = Credentials.load_or_create(self.home)
        self.mosquitto = MosquittoService(
            self.home / "mosquitto",
            self.mqtt_port,
            self.credentials.mqtt_admin_password,
            bind,
            login_files=True,
        )
        self.influx = InfluxService(
            self.home / "influxdb", self.influx_port, self.credentials.influx_admin_password, bind
        )

    def _recorded_ports(self) -> dict[str, int]:
        try:
            data: dict[str, int] = json.loads((self.home / "stack.json").read_text())
        except (FileNotFoundError, ValueError):
            return {}
        return data

    def up(self) -> None:
        """Start whatever is not running; harmless when everything already is."""
        self.mosquitto.start()
        try:
            self._service_accounts()
            self.influx.start()
        except ServiceError:
            self.mosquitto.stop()
            raise
        (self.home / "stack.json").write_text(
            json.dumps({"mqtt_port": self.mqtt_port, "influx_port": self.influx_port})
        )

    def _service_accounts(self) -> None:
        """The ingest workers' and the alert engine's own logins, with exactly their rights."""
        broker = self.mosquitto
        try:
            with DynsecSession(broker.url, broker.admin_user, broker.admin_password) as session:
                ensure_account(session, ingest_account(INGEST_USER), self.ingest_password)
                ensure_account(session, alerts_account(ALERTS_USER), self.alerts_password)
        except AccountError as exc:
            raise ServiceError(f"service accounts on the stack's broker: {exc}") from exc

    @property
    def ingest_password(self) -> str:
        return self.credentials.mqtt_ingest_password

    @property
    def alerts_password(self) -> str:
        return self.credentials.mqtt_alerts_password

    def down(self) -> list[str]:
        """Stop exactly the processes this home started; returns the names stopped."""
        stopped = [name for name, svc in self._services() if svc.stop()]
        return stopped

    def status(self) -> dict[str, dict[str, Any]]:
        return {
            name: {
                "up": svc.running() and svc.answers(),
                "pid": svc.process.pid,
                "url": svc.url,
            }
            for name, svc in self._services()
        }

    def _services(self) -> list[tuple[str, MosquittoService | InfluxService]]:
        return [("mosquitto", self.mosquitto), ("influxdb", self.influx)]

    def endpoints(self) -> dict[str, str]:
        return {
            "mqtt": f"{self.mosquitto.url} (user {self.mosquitto.admin_user})",
            "ingest login": f"user {INGEST_USER} (password in credentials.json)",
            "alerts login": f"user {ALERTS_USER} (password in credentials.json)",
            "influxdb": f"{self.influx.url} (database {self.influx.database}, user admin)",
            "credentials": str(self.home / "credentials.json"),
        }
