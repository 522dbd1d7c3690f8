"""The local stack: one Mosquitto and one InfluxDB under a home directory.

``home/credentials.json`` (mode 0600) holds the generated admin passwords;
``home/stack.json`` records the ports so ``status`` and ``down`` need no options.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gramlink.services import InfluxService, MosquittoService, ServiceError

DEFAULT_HOME = Path(".gramlink")
DEFAULT_MQTT_PORT = 1883
DEFAULT_INFLUX_PORT = 8086


@dataclass(frozen=True)
class Credentials:
    mqtt_admin_password: str
    influx_admin_password: str

    @classmethod
    def load_or_create(cls, home: Path) -> Credentials:
        path = home / "credentials.json"
        if path.exists():
            data = json.loads(path.read_text())
            return cls(data["mqtt_admin_password"], data["influx_admin_password"])
        creds = cls(secrets.token_urlsafe(24), secrets.token_urlsafe(24))
        home.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(creds.__dict__, out, indent=1)
        return creds


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
            self.influx.start()
        except ServiceError:
            self.mosquitto.stop()
            raise
        (self.home / "stack.json").write_text(
            json.dumps({"mqtt_port": self.mqtt_port, "influx_port": self.influx_port})
        )

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
            "influxdb": f"{self.influx.url} (database {self.influx.database}, user admin)",
            "credentials": str(self.home / "credentials.json"),
        }
