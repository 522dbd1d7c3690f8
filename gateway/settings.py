"""Gateway settings: one pydantic-settings class, env prefix ``GRAMLINK_GATEWAY_``.

Read only by the entry points (``gramlink gateway``, ``python -m gateway``), which
turn command-line options into the same fields; options win over the environment.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import re
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from contract.topics import ID_RE
from gateway.errors import ConfigError
from mqttlink.endpoint import BrokerUrl, Endpoint, PemFile, TlsFiles
from mqttlink.reasons import SettingNames

ENV_PREFIX = "GRAMLINK_GATEWAY_"
MIN_KEY_BYTES = 16
CENTRE_KEY_BYTES = 32
NUMBER_RE = re.compile(r"\+?[0-9]{3,20}")


class GatewaySettings(BaseSettings):
    """Every setting of the gateway process (documented in docs/gateway.md)."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    centre: str
    gateway_id: str = ""
    local_url: BrokerUrl = "mqtt://127.0.0.1:1883"
    local_username: str | None = None
    local_password: SecretStr | None = None
    local_ca_file: PemFile = None
    local_cert_file: PemFile = None
    local_key_file: PemFile = None
    uplink_url: BrokerUrl
    uplink_username: str | None = None
    uplink_password: SecretStr | None = None
    uplink_ca_file: PemFile = None
    uplink_cert_file: PemFile = None
    uplink_key_file: PemFile = None
    data_dir: Path = Path(".gramlink/gateway")
    pseudonym_key: SecretStr
    centre_key: SecretStr | None = None
    dynsec_queue: int = Field(1000, ge=10, le=65535)
    dynsec_timeout_s: float = Field(10.0, gt=0, le=300)
    disk_budget_bytes: int = Field(1024**3, ge=64 * 1024)
    batch_max_records: int = Field(1000, ge=1, le=20_000)
    batch_max_bytes: int = Field(512 * 1024, ge=4096, le=8 * 1024 * 1024)
    batch_max_age_ms: int = Field(500, ge=0, le=60_000)
    uplink_max_inflight: int = Field(16, ge=1, le=1000)
    live_share: float = Field(0.25, ge=0.0, le=0.9)
    receipt_timeout_s: float = Field(120.0, ge=1.0, le=86_400)
    uplink_max_bytes_per_s: int = Field(0, ge=0)  # 0: no cap on the backlog drain
    clock_jump_s: float = Field(60.0, ge=1.0)  # a wall-clock step at least this big re-bases
    clock_ahead_s: float = Field(3600.0, ge=60.0)  # device time this far ahead: clock suspect
    clock_offset_file: Path | None = None  # test hook: "<offset_ms> [synced|unsynced]"
    autonomy_window_s: float = Field(900.0, ge=1.0)  # inflow averaged over this window
    commit_window_ms: int = Field(5, ge=0, le=1000)
    ingest_queue: int = Field(10_000, ge=100)
    sqlite_synchronous: Literal["full", "normal"] = "full"
    quarantine_max_rows: int = Field(10_000, ge=10)
    health_interval_s: float = Field(30.0, gt=0)
    keepalive_s: int = Field(30, ge=5, le=300)
    session_expiry_s: int = Field(7 * 24 * 3600, ge=0)
    will_delay_s: int = Field(30, ge=0)
    backoff_min_s: float = Field(0.5, gt=0)
    backoff_max_s: float = Field(60.0, gt=0)
    uplink_down_warn_s: float = Field(300.0, gt=0)
    local_down_exit_s: float = Field(120.0, gt=0)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    firmware_port: int = Field(0, ge=0, le=65535)  # local firmware server; 0: cache off
    firmware_host: str = "0.0.0.0"
    firmware_url: str | None = None  # devices reach the server here; None: http://host:port
    firmware_cache_bytes: int = Field(512 * 1024**2, ge=1024**2)
    firmware_timeout_s: float = Field(60.0, gt=0, le=3600)
    # Local outlets of alerts raised at the centre (docs/gateway.md, "Alerts at the centre")
    alert_command: str | None = None  # run with the alert JSON on stdin
    alert_sms_numbers: str = ""  # comma-separated; empty: no SMS
    alert_sms_config: Path | None = None  # gammu-smsd's config file (-c of gammu-smsd-inject)
    alert_sms_inject: str = "gammu-smsd-inject"
    alert_outlet_timeout_s: float = Field(10.0, gt=0, le=300)

    @field_validator("centre")
    @classmethod
    def _centre(cls, value: str) -> str:
        if not ID_RE.fullmatch(value):
            raise ValueError(f"must match {ID_RE.pattern}")
        return value

    @field_validator("pseudonym_key")
    @classmethod
    def _key(cls, value: SecretStr) -> SecretStr:
        secret = value.get_secret_value()
        if len(secret.encode()) < MIN_KEY_BYTES or secret.lower() in {"changeme", "change-me"}:
            raise ValueError(f"needs at least {MIN_KEY_BYTES} bytes (and not a placeholder)")
        return value

    @field_validator("centre_key")
    @classmethod
    def _centre_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            parse_centre_key(value.get_secret_value())
        return value

    @model_validator(mode="after")
    def _derived(self) -> GatewaySettings:
        if not self.gateway_id:
            object.__setattr__(self, "gateway_id", f"{self.centre}-gw"[:32])
        if not ID_RE.fullmatch(self.gateway_id):
            raise ValueError(f"gateway_id must match {ID_RE.pattern}")
        if self.firmware_port and not self.firmware_url and self.firmware_host in ("0.0.0.0", "::"):
            raise ValueError(
                "firmware_url: set it to the address the centre's devices reach this gateway at"
            )
        if self.backoff_max_s < self.backoff_min_s:
            raise ValueError("backoff_max_s must be >= backoff_min_s")
        return self

    @field_validator("alert_sms_numbers")
    @classmethod
    def _numbers(cls, value: str) -> str:
        for number in filter(None, (n.strip() for n in value.split(","))):
            if not NUMBER_RE.fullmatch(number):
                raise ValueError(f"{number!r} is not a phone number (digits, an optional +)")
        return value

    @property
    def sms_numbers(self) -> tuple[str, ...]:
        return tuple(n for n in (n.strip() for n in self.alert_sms_numbers.split(",")) if n)

    @property
    def firmware_local_url(self) -> str:
        """Where the centre's devices fetch firmware from this gateway."""
        if self.firmware_url:
            return self.firmware_url.rstrip("/")
        return f"http://{self.firmware_host}:{self.firmware_port}"

    @property
    def local(self) -> Endpoint:
        return Endpoint.parse(self.local_url)

    @property
    def uplink(self) -> Endpoint:
        return Endpoint.parse(self.uplink_url)

    def tls_files(self, link: Literal["local", "uplink"]) -> TlsFiles:
        """The CA / client certificate / key of a link, with the settings they came from."""
        return TlsFiles.named(
            getattr(self, f"{link}_ca_file"),
            getattr(self, f"{link}_cert_file"),
            getattr(self, f"{link}_key_file"),
            prefix=env_name(f"{link}_"),
        )

    @staticmethod
    def setting_names(link: Literal["local", "uplink"]) -> SettingNames:
        """The settings named in a refusal line of a link."""
        return SettingNames(
            url=env_name(f"{link}_url"),
            username=env_name(f"{link}_username"),
            password=env_name(f"{link}_password"),
            client_id=env_name("gateway_id"),
            ca_file=env_name(f"{link}_ca_file"),
        )

    @property
    def db_path(self) -> Path:
        return self.data_dir / f"{self.centre}.sqlite3"

    @property
    def centre_key_bytes(self) -> bytes | None:
        """The decoded centre key, or None: local enforcement is off."""
        if self.centre_key is None:
            return None
        return parse_centre_key(self.centre_key.get_secret_value())


def env_name(field: str) -> str:
    """The environment variable of a setting: ``GRAMLINK_GATEWAY_<FIELD>``."""
    return f"{ENV_PREFIX}{field.upper()}"


def parse_centre_key(text: str) -> bytes:
    """Decode a centre key as the API returns it (base64url; padding optional).

    The error message never contains the value.
    """
    text = text.strip()
    if not text:
        raise ValueError("is empty (unset it to run without local enforcement)")
    try:
        key = base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(
            "is not base64 (give the centre_key the API returned for this gateway)"
        ) from None
    if len(key) < CENTRE_KEY_BYTES:
        raise ValueError(f"decodes to {len(key)} bytes; a centre key has {CENTRE_KEY_BYTES}")
    return key


# Secrets are settings only (environment), never options: a command line is visible in ps.
SECRET_FIELDS = frozenset({"local_password", "uplink_password", "pseudonym_key", "centre_key"})


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add one ``--kebab-case`` option per non-secret setting (default: env, then built-in)."""
    for name, field in GatewaySettings.model_fields.items():
        if name in SECRET_FIELDS:
            continue
        option = "--" + name.replace("_", "-")
        meta = name.upper()
        parser.add_argument(
            option,
            dest=name,
            default=None,
            metavar=meta,
            help=f"{field.description or ''} (env {ENV_PREFIX}{meta})".strip(),
        )


def load(args: argparse.Namespace | None = None) -> GatewaySettings:
    """Settings from options and the environment; ConfigError naming the setting if wrong."""
    given = {k: v for k, v in vars(args or argparse.Namespace()).items() if v is not None}
    given = {k: v for k, v in given.items() if k in GatewaySettings.model_fields}
    try:
        return GatewaySettings(**given)
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        name = str(first["loc"][0]) if first["loc"] else "settings"
        msg = first["msg"]
        if name == "settings":
            raise ConfigError(f"invalid gateway settings: {msg}") from None
        raise ConfigError(f"setting {ENV_PREFIX}{name.upper()}: {msg}") from None
