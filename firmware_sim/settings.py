"""Settings of ``gramlink sim`` (env prefix ``GRAMLINK_SIM_``); read only in the command's run()."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from firmware_sim.errors import ConfigError
from mqttlink.endpoint import Endpoint, EndpointError, TlsFiles
from mqttlink.reasons import SettingNames

ENV_PREFIX = "GRAMLINK_SIM_"
SETTING_NAMES = SettingNames(
    url=f"{ENV_PREFIX}MQTT_URL",
    username=f"{ENV_PREFIX}MQTT_USERNAME (or the --credentials file)",
    password=f"{ENV_PREFIX}MQTT_PASSWORD",
    ca_file=f"{ENV_PREFIX}MQTT_CA_FILE",
)


class SimSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GRAMLINK_SIM_", extra="forbid")

    mqtt_url: str = "mqtt://127.0.0.1:1883"
    mqtt_username: str | None = None
    mqtt_password: SecretStr | None = None
    mqtt_ca_file: Path | None = None
    mqtt_cert_file: Path | None = None
    mqtt_key_file: Path | None = None
    centres: int = Field(1, ge=1, le=100_000)
    devices_per_centre: int = Field(7, ge=1, le=1000)
    centre_prefix: str = "c"
    mode: Literal["device", "centre"] = "device"
    seed: int = 1
    accelerate: float = Field(1.0, gt=0)
    backfill_days: float = Field(0.0, ge=0)
    duration_s: float | None = Field(None, gt=0)
    readings: int | None = Field(None, gt=0)
    interval_s: int | None = Field(None, ge=1, le=86_400)
    telemetry_qos: Literal[0, 1] = 1
    credentials: Path | None = None
    will_delay_s: int = Field(5, ge=0, le=3600)
    malformed_rate: float = Field(0.0, ge=0, le=1)
    clock_skew_s: float = Field(0.0, ge=0)
    duplicate_rate: float = Field(0.0, ge=0, le=1)
    reorder_rate: float = Field(0.0, ge=0, le=1)
    offline_every_s: float = Field(0.0, ge=0)
    offline_s: float = Field(30.0, ge=0)
    qos0_burst_every_s: float = Field(0.0, ge=0)
    qos0_burst_size: int = Field(100, ge=1)
    client: Literal["paho", "raw"] | None = None
    workers: int = Field(1, ge=1, le=64)
    scenario: Literal["demo"] | None = None  # firmware_sim/scenario.py, on the first centre

    def broker(self) -> Endpoint:
        try:
            return Endpoint.parse(self.mqtt_url)
        except EndpointError as exc:
            raise ConfigError(f"{ENV_PREFIX}MQTT_URL: {exc}") from None

    def tls_files(self) -> TlsFiles:
        """For ``mqtts://``: the CA, client certificate and key, named by their settings."""
        return TlsFiles.named(
            self.mqtt_ca_file, self.mqtt_cert_file, self.mqtt_key_file, prefix=f"{ENV_PREFIX}MQTT_"
        )


def load_settings(**overrides: object) -> SimSettings:
    """Environment, then command-line overrides (None means not given); one line on error."""
    given = {k: v for k, v in overrides.items() if v is not None}
    try:
        return SimSettings(**given)  # type: ignore[arg-type]
    except ValidationError as exc:
        first = exc.errors()[0]
        name = str(first["loc"][0]) if first["loc"] else "settings"
        raise ConfigError(f"GRAMLINK_SIM_{name.upper()}: {first['msg']}") from None
