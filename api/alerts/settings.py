"""Settings of the alert engine (env prefix ``GRAMLINK_ALERTS_``), read only at start.

The engine runs inside the API process (``GRAMLINK_API_ALERTS``, on by default)
or alone as ``gramlink alerts``; one settings class serves both. Inside the API
every setting not given as ``GRAMLINK_ALERTS_*`` is taken from the API's own
(:meth:`AlertsSettings.inside_api`): the registry, the broker (with the API's
admin login unless the engine has its own account) and InfluxDB.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from mqttlink.endpoint import BrokerUrl, Endpoint, PemFile, TlsFiles
from mqttlink.reasons import SettingNames
from runtime.slots import host_label

if TYPE_CHECKING:
    from api.settings import ApiSettings

ENV_PREFIX = "GRAMLINK_ALERTS_"


def env_name(field: str) -> str:
    return f"{ENV_PREFIX}{field.upper()}"


class AlertsSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore")

    db_url: str = "sqlite:///.gramlink/api.sqlite"
    mqtt_url: BrokerUrl = "mqtt://127.0.0.1:1883"
    mqtt_username: str = "alerts"
    mqtt_password: SecretStr = SecretStr("")
    mqtt_ca_file: PemFile = None
    mqtt_cert_file: PemFile = None
    mqtt_key_file: PemFile = None
    client_id: str = ""  # empty: gl-alerts-{host}
    session_expiry_s: Annotated[int, Field(ge=60, le=2**32 - 1)] = 7 * 86_400
    receive_maximum: Annotated[int, Field(ge=1, le=65_535)] = 10_000
    influx_url: str = "http://127.0.0.1:8086"  # empty: no ``alerts`` measurement
    influx_db: str = "gramlink"
    influx_user: str = "admin"
    influx_password: SecretStr = SecretStr("")
    influx_timeout_s: Annotated[float, Field(gt=0, le=120)] = 10.0
    lag_s: Annotated[float, Field(ge=0, le=86_400)] = 120.0
    tick_s: Annotated[float, Field(gt=0, le=60)] = 1.0
    absence_min_wall_s: Annotated[float, Field(ge=0, le=3600)] = 10.0
    round_max: Annotated[int, Field(ge=1, le=100_000)] = 2000
    registry_refresh_s: Annotated[float, Field(gt=0, le=3600)] = 60.0
    rules_refresh_s: Annotated[float, Field(gt=0, le=3600)] = 5.0
    metrics_port: Annotated[int, Field(ge=0, le=65_535)] = 0  # gramlink alerts only; 0: off
    metrics_addr: str = "127.0.0.1"
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    @field_validator("influx_url")
    @classmethod
    def _http(cls, value: str) -> str:
        if value and urlsplit(value).scheme not in ("http", "https"):
            raise ValueError("must look like http://host:port (or be empty: no annotations)")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _client_id(self) -> AlertsSettings:
        if not self.client_id:
            self.client_id = f"gl-alerts-{host_label()}"
        return self

    @property
    def endpoint(self) -> Endpoint:
        return Endpoint.parse(self.mqtt_url)

    def tls_files(self) -> TlsFiles:
        return TlsFiles.named(
            self.mqtt_ca_file, self.mqtt_cert_file, self.mqtt_key_file, prefix=env_name("mqtt_")
        )

    def setting_names(self) -> SettingNames:
        return SettingNames(
            url=env_name("mqtt_url"),
            username=env_name("mqtt_username"),
            password=env_name("mqtt_password"),
            client_id=env_name("client_id"),
            ca_file=env_name("mqtt_ca_file"),
        )

    @classmethod
    def inside_api(cls, api: ApiSettings, **overrides: Any) -> AlertsSettings:
        """The engine's settings in the API process: ``GRAMLINK_ALERTS_*``, else the API's."""
        given = cls(**overrides)
        inherited: dict[str, Any] = {
            "db_url": api.db_url,
            "mqtt_url": api.mqtt_url,
            "mqtt_ca_file": api.mqtt_ca_file,
            "mqtt_cert_file": api.mqtt_cert_file,
            "mqtt_key_file": api.mqtt_key_file,
            "influx_url": api.influx_url,
            "influx_db": api.influx_db,
            "influx_user": api.influx_user,
            "influx_password": api.influx_password,
            "influx_timeout_s": api.influx_timeout_s,
            "log_level": api.log_level,
        }
        own = {"mqtt_username", "mqtt_password"} & given.model_fields_set
        if not own:  # no account of its own: the API's admin login
            inherited["mqtt_username"] = api.mqtt_admin_user
            inherited["mqtt_password"] = api.mqtt_admin_password
        values = {k: v for k, v in inherited.items() if k not in given.model_fields_set}
        return cls(**values, **overrides)


def describe(exc: Exception) -> str:
    """One line naming the first setting at fault (never its value)."""
    errors: list[dict[str, Any]] = getattr(exc, "errors", lambda: [])()
    if not errors:
        return str(exc).splitlines()[0]
    first = errors[0]
    name = env_name(str(first["loc"][0])) if first.get("loc") else "settings"
    message = "is required" if first.get("type") == "missing" else first.get("msg", "invalid")
    return f"{name} {message}"
