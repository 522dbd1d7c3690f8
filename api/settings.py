"""Settings of the API process (env prefix ``GRAMLINK_API_``), read only in ``main``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from api.broker import BrokerAccess, env_name
from api.windows import parse_hours
from contract.provisioning import MIN_KEY_BYTES
from mqttlink.endpoint import BrokerUrl, Endpoint, PemFile, TlsFiles

PLACEHOLDERS = frozenset({"changeme", "change-me", "secret", "password", "xxx"})


class ApiSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GRAMLINK_API_", extra="ignore")

    db_url: str = "sqlite:///.gramlink/api.sqlite"
    mqtt_url: BrokerUrl = "mqtt://127.0.0.1:1883"
    mqtt_admin_user: str = "admin"
    mqtt_admin_password: SecretStr = SecretStr("")
    mqtt_ca_file: PemFile = None
    mqtt_cert_file: PemFile = None
    mqtt_key_file: PemFile = None
    mqtt_timeout_s: Annotated[float, Field(gt=0, le=120)] = 10.0
    dynsec_batch: Annotated[int, Field(ge=1, le=5000)] = 500
    broker_files_dir: Path | None = None
    broker_pid_file: Path | None = None
    presence: bool = True
    alerts: bool = True  # run the alert engine in this process (GRAMLINK_ALERTS_* settings)
    influx_url: str = "http://127.0.0.1:8086"
    influx_db: str = "gramlink"
    influx_user: str = "admin"
    influx_password: SecretStr = SecretStr("")
    influx_timeout_s: Annotated[float, Field(gt=0, le=120)] = 10.0
    centre_facts_interval_s: Annotated[float, Field(ge=0, le=86_400)] = 60.0
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 8000
    master_secret: SecretStr
    key_version: Annotated[int, Field(ge=1)] = 1
    page_max: Annotated[int, Field(ge=1, le=10_000)] = 500
    bulk_max_rows: Annotated[int, Field(ge=1, le=1_000_000)] = 50_000
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    sequence_interval_s: Annotated[float, Field(ge=0, le=3600)] = 10.0
    sequence_lag_s: Annotated[float, Field(ge=0, le=3600)] = 30.0
    sequence_grace_s: Annotated[float, Field(ge=0, le=86_400)] = 60.0
    sequence_horizon_s: Annotated[float, Field(gt=0)] = 7 * 86_400.0
    sequence_check_after_s: Annotated[float, Field(ge=0)] = 600.0
    notify: bool = True
    notify_concurrency: Annotated[int, Field(ge=1, le=64)] = 4
    notify_timeout_s: Annotated[float, Field(gt=0, le=120)] = 10.0
    notify_backoff_min_s: Annotated[float, Field(gt=0, le=86_400)] = 5.0
    notify_backoff_max_s: Annotated[float, Field(gt=0, le=86_400)] = 600.0
    notify_failed_after: Annotated[int, Field(ge=1, le=1000)] = 8
    notify_poll_s: Annotated[float, Field(gt=0, le=60)] = 1.0
    command_expiry_s: Annotated[int, Field(ge=1, le=7 * 86_400)] = 3600
    command_rate_per_s: Annotated[float, Field(gt=0, le=10_000)] = 20.0
    command_sweep_s: Annotated[float, Field(gt=0, le=60)] = 0.5
    firmware_dir: Path = Path(".gramlink/firmware")
    firmware_max_bytes: Annotated[int, Field(ge=1024)] = 256 * 1024 * 1024
    firmware_public_url: str | None = None  # how devices reach the API; None: http://host:port
    campaign_interval_s: Annotated[float, Field(ge=0, le=3600)] = 2.0  # 0: no campaign runner
    campaign_max_sends: Annotated[int, Field(ge=1, le=100_000)] = 200  # ota commands per tick
    opening_hours: str = "09:00-17:00"  # centres' local opening hours: no ota inside them

    @field_validator("master_secret")
    @classmethod
    def _strong(cls, value: SecretStr) -> SecretStr:
        raw = value.get_secret_value()
        if raw.lower() in PLACEHOLDERS or len(raw.encode()) < MIN_KEY_BYTES:
            raise ValueError(f"must be at least {MIN_KEY_BYTES} bytes and not a placeholder")
        return value

    @field_validator("influx_url")
    @classmethod
    def _http(cls, value: str) -> str:
        if urlsplit(value).scheme not in ("http", "https"):
            raise ValueError("must look like http://host:port")
        return value.rstrip("/")

    @field_validator("firmware_public_url")
    @classmethod
    def _public(cls, value: str | None) -> str | None:
        if value is not None and urlsplit(value).scheme not in ("http", "https"):
            raise ValueError("must look like http://host:port")
        return None if value is None else value.rstrip("/")

    @field_validator("opening_hours")
    @classmethod
    def _hours(cls, value: str) -> str:
        parse_hours(value)
        return value

    @field_validator("broker_files_dir")
    @classmethod
    def _directory(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_dir():
            raise ValueError(f"{value} is not a directory")
        return value

    @model_validator(mode="after")
    def _pid_file(self) -> ApiSettings:
        if self.broker_pid_file is not None and self.broker_files_dir is None:
            raise ValueError("broker_pid_file: only used with GRAMLINK_API_BROKER_FILES_DIR")
        if self.broker_files_dir is not None and self.broker_pid_file is None:
            self.broker_pid_file = self.broker_files_dir / "mosquitto.pid"
        return self

    @model_validator(mode="after")
    def _notify_backoff(self) -> ApiSettings:
        if self.notify_backoff_max_s < self.notify_backoff_min_s:
            raise ValueError("notify_backoff_max_s: must not be below NOTIFY_BACKOFF_MIN_S")
        return self

    def firmware_base_url(self) -> str:
        """The API's address as devices and gateways reach it (firmware downloads)."""
        return self.firmware_public_url or f"http://{self.host}:{self.port}"

    def broker_access(self) -> BrokerAccess:
        """The central broker as every MQTT connection of the API reaches it."""
        return BrokerAccess(
            Endpoint.parse(self.mqtt_url),
            self.mqtt_admin_user,
            self.mqtt_admin_password.get_secret_value(),
            TlsFiles.named(
                self.mqtt_ca_file,
                self.mqtt_cert_file,
                self.mqtt_key_file,
                prefix=env_name("mqtt_"),
            ),
            timeout_s=self.mqtt_timeout_s,
        )


def describe(exc: Exception) -> str:
    """One line naming the first setting at fault (never its value)."""
    errors: list[dict[str, Any]] = getattr(exc, "errors", lambda: [])()
    if not errors:
        return str(exc).splitlines()[0]
    first = errors[0]
    name = "GRAMLINK_API_" + str(first["loc"][0]).upper() if first.get("loc") else "settings"
    message = "is required" if first.get("type") == "missing" else first.get("msg", "invalid")
    return f"{name} {message}"
