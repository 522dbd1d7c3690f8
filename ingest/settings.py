"""The ingest worker's settings: environment ``GRAMLINK_INGEST_*`` or ``gramlink ingest`` options.

Read once, in ``gramlink ingest`` / ``python -m ingest`` (never at import). A bad
value stops the process at start with one line naming the setting.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Literal, Self
from urllib.parse import urlsplit

from pydantic import (
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from contract.topics import ID_RE
from ingest.errors import ConfigError
from mqttlink.endpoint import BrokerUrl, Endpoint, PemFile, TlsFiles
from mqttlink.reasons import SettingNames

ENV_PREFIX = "GRAMLINK_INGEST_"
# Defaults decided at start (ingest.identity), as ``--help`` shows them.
AUTO_DEFAULTS = {"client_id": "ingest-HOST-SLOT", "metrics_port": "METRICS_PORT_BASE + SLOT - 1"}
PLACEHOLDERS = frozenset({"", "changeme", "change-me", "password", "secret", "xxx", "todo"})


class IngestSettings(BaseSettings):
    """Every setting of one ingest worker (see docs/ingest.md, Configuration)."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", frozen=True)

    mqtt_url: BrokerUrl = "mqtt://127.0.0.1:1883"
    mqtt_username: str | None = None
    mqtt_password: SecretStr | None = None
    client_id: str = ""  # empty: ingest-{host}-{slot} (ingest.identity)
    share_group: str = "ingest"
    session_expiry_s: int = Field(7 * 86400, ge=60, le=2**32 - 1)
    receive_maximum: int = Field(10_000, ge=1, le=65_535)
    keepalive_s: int = Field(30, ge=5, le=300)
    mqtt_down_exit_s: float = Field(300.0, ge=5)
    mqtt_ca_file: PemFile = None
    mqtt_cert_file: PemFile = None
    mqtt_key_file: PemFile = None

    influx_url: str = "http://127.0.0.1:8086"
    writer: Literal["v1", "v2"] = "v1"
    influx_database: str = "gramlink"
    influx_retention_policy: str = ""
    influx_username: str | None = None
    influx_password: SecretStr | None = None
    influx_token: SecretStr | None = None
    influx_org: str | None = None
    influx_bucket: str | None = None
    influx_gzip: bool = False

    batch_size: int = Field(5_000, ge=1, le=100_000)
    batch_age_ms: int = Field(200, ge=1, le=60_000)
    write_concurrency: int = Field(2, ge=1, le=16)
    write_timeout_s: float = Field(10.0, gt=0)
    retry_initial_s: float = Field(0.5, gt=0)
    retry_max_s: float = Field(30.0, gt=0)

    max_age_s: float = Field(90 * 86400.0, gt=0)
    max_future_s: float = Field(3600.0, ge=0)
    model_cache_size: int = Field(100_000, ge=100)

    metrics_port: int | None = Field(None, ge=0, le=65_535)  # None: base + slot - 1; 0: off
    metrics_port_base: int = Field(9108, ge=1, le=65_535 - 63)
    metrics_addr: str = "127.0.0.1"
    pipeline_interval_s: float = Field(10.0, ge=0)
    sequence_interval_s: float = Field(10.0, ge=0)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    state_dir: Path = Field(default_factory=lambda: default_state_dir())

    @field_validator("influx_url")
    @classmethod
    def _influx_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must look like http://host:port")
        return value.rstrip("/")

    @field_validator("client_id", "share_group")
    @classmethod
    def _ids(cls, value: str, info: ValidationInfo) -> str:
        if info.field_name == "client_id" and value == "":
            return value  # chosen at start from the host and a free slot
        if ID_RE.fullmatch(value) is None:
            raise ValueError(f"must match {ID_RE.pattern}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.mqtt_username and not _usable(self.mqtt_password):
            raise ValueError("mqtt_password: missing or a placeholder (mqtt_username is set)")
        if self.writer == "v1" and self.influx_username and not _usable(self.influx_password):
            raise ValueError("influx_password: missing or a placeholder (influx_username is set)")
        if self.writer == "v2":
            if not _usable(self.influx_token):
                raise ValueError("influx_token: missing or a placeholder (writer is v2)")
            for name in ("influx_org", "influx_bucket"):
                if not getattr(self, name):
                    raise ValueError(f"{name}: required when writer is v2")
        return self

    @property
    def endpoint(self) -> Endpoint:
        return Endpoint.parse(self.mqtt_url)

    def tls_files(self) -> TlsFiles:
        return TlsFiles.named(
            self.mqtt_ca_file, self.mqtt_cert_file, self.mqtt_key_file, prefix=f"{ENV_PREFIX}MQTT_"
        )

    def setting_names(self) -> SettingNames:
        """The settings a refusal line names (see ``mqttlink.reasons``)."""
        return SettingNames(
            url=f"{ENV_PREFIX}MQTT_URL",
            username=f"{ENV_PREFIX}MQTT_USERNAME",
            password=f"{ENV_PREFIX}MQTT_PASSWORD",
            client_id=f"{ENV_PREFIX}CLIENT_ID",
            ca_file=f"{ENV_PREFIX}MQTT_CA_FILE",
        )


def default_state_dir() -> Path:
    """``$XDG_STATE_HOME/gramlink`` (``~/.local/state/gramlink``): where slot locks live."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "gramlink"


def _usable(secret: SecretStr | None) -> bool:
    return secret is not None and secret.get_secret_value().strip().lower() not in PLACEHOLDERS


def load_settings(**overrides: object) -> IngestSettings:
    """Environment plus explicit overrides (command-line options win); ConfigError in one line."""
    given = {key: value for key, value in overrides.items() if value is not None}
    try:
        return IngestSettings(**given)  # type: ignore[arg-type]
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        loc = [str(part) for part in first["loc"]]
        msg = str(first["msg"]).removeprefix("Value error, ")
        if not loc and ":" in msg:  # model-level check: "name: why"
            name, _, msg = msg.partition(": ")
            loc = [name]
        name = loc[0] if loc else "?"
        raise ConfigError(
            f"setting {ENV_PREFIX}{name.upper()} (--{name.replace('_', '-')}): {msg}"
        ) from None


def add_options(parser: argparse.ArgumentParser) -> None:
    """One ``--option`` per setting (default: the environment, then the built-in default)."""
    for name, info in IngestSettings.model_fields.items():
        flag = "--" + name.replace("_", "-")
        env = ENV_PREFIX + name.upper()
        if info.annotation is bool:
            parser.add_argument(
                flag, dest=name, default=None, action=argparse.BooleanOptionalAction
            )
            continue
        shown = AUTO_DEFAULTS.get(name, info.default)
        if "password" in name or "token" in name:
            shown = "***"
        elif name == "state_dir":
            shown = default_state_dir()
        parser.add_argument(flag, dest=name, default=None, help=f"{env} (default {shown})")


def from_args(args: argparse.Namespace) -> IngestSettings:
    return load_settings(
        **{name: getattr(args, name, None) for name in IngestSettings.model_fields}
    )
