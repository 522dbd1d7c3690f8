"""A Mosquitto 2.0 broker with the dynamic-security plugin, anonymous access off.

The broker queues up to 256 MiB per offline persistent session (not Mosquitto's
default of 1,000 messages) and saves its persistence file every second, so a
consumer that is down for minutes, or a broker restart, loses nothing.
"""

from __future__ import annotations

import getpass
import json
import shutil
import signal
import subprocess
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import paho.mqtt.client as mqtt

from gramlink.services.process import PidProcess, ServiceError, port_in_use, wait_until

DYNSEC_PLUGIN_CANDIDATES: Final = (
    "/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so",
    "/usr/lib/aarch64-linux-gnu/mosquitto_dynamic_security.so",
    "/usr/lib/mosquitto_dynamic_security.so",
)
MAX_QUEUED_BYTES: Final = 256 * 1024 * 1024
MAX_QUEUED_MESSAGES: Final = 2_000_000
ADMIN_USER: Final = "admin"


def dynsec_plugin() -> str:
    for candidate in DYNSEC_PLUGIN_CANDIDATES:
        if Path(candidate).exists():
            return candidate
    raise ServiceError("mosquitto dynamic-security plugin not found (apt-get install mosquitto)")


@dataclass(frozen=True)
class TlsListener:
    """A second listener with TLS: server certificate and key (PEM); with ``client_ca``
    every client must present a certificate that CA signed (mutual TLS)."""

    port: int
    certfile: Path
    keyfile: Path
    client_ca: Path | None = None


class MosquittoService:
    """One broker: config, data, log and PID file under ``home``."""

    def __init__(
        self,
        home: Path,
        port: int,
        admin_password: str,
        bind: str = "127.0.0.1",
        *,
        login_files: bool = False,
        tls: TlsListener | None = None,
    ) -> None:
        self.home = home
        self.login_files = login_files
        self.tls = tls
        self.port = port
        self.bind = bind
        self.admin_user = ADMIN_USER
        self.admin_password = admin_password
        self.config_file = home / "mosquitto.conf"
        self.dynsec_file = home / "dynamic-security.json"
        # A central broker's device and gateway logins, written by the API
        # (api.broker_files) when ``login_files``; empty at first.
        self.password_file = home / "clients.passwd"
        self.acl_file = home / "clients.acl"
        self.process = PidProcess(
            "mosquitto", home / "mosquitto.pid", str(self.config_file), home / "mosquitto.log"
        )

    @property
    def url(self) -> str:
        return f"mqtt://{self.bind}:{self.port}"

    def running(self) -> bool:
        return self.process.running()

    def start(self, timeout: float = 20.0) -> None:
        if self.running():
            return
        if port_in_use(self.bind, self.port):
            raise ServiceError(f"port {self.port} is already in use (mosquitto)")
        if shutil.which("mosquitto") is None and not Path("/usr/sbin/mosquitto").exists():
            raise ServiceError("mosquitto not found (apt-get install mosquitto)")
        self.home.mkdir(parents=True, exist_ok=True)
        if not self.dynsec_file.exists():
            self._init_dynsec()
        self._deny_delivery_by_default()
        if self.login_files:
            for path in (self.password_file, self.acl_file):
                if not path.exists():
                    path.touch(mode=0o640)
        self.config_file.write_text(self._config())
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.process.spawn([binary, "-c", str(self.config_file)])
        wait_until(self._ready, timeout, f"mosquitto on port {self.port}")

    def stop(self, timeout: float = 15.0) -> bool:
        return self.process.stop(timeout)

    def kill(self) -> bool:
        """SIGKILL: a power cut, for tests (unsaved persistence is lost like in the field)."""
        return self.process.stop(timeout=5.0, sig=signal.SIGKILL)

    def answers(self) -> bool:
        """True if the admin account can complete an MQTT connect."""
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=f"probe-{uuid.uuid4().hex[:8]}",
            protocol=mqtt.MQTTv5,
        )
        client.username_pw_set(self.admin_user, self.admin_password)
        try:
            client.connect(self.bind, self.port, keepalive=5)
            client.loop_start()
            ok = wait_or_false(client.is_connected, 3.0)
            client.disconnect()
            client.loop_stop()
            return ok
        except OSError:
            return False

    def _ready(self) -> bool:
        failure = self.process.exited_early()
        if failure is not None:
            raise ServiceError(f"mosquitto exited at start: {failure}")
        return port_in_use(self.bind, self.port) and self.answers()

    def _deny_delivery_by_default(self) -> None:
        """Mosquitto's own ACL file grants every SUBSCRIBE and checks only delivery,
        so delivery must be denied unless a role allows it (dynsec allows it by
        default); each GramLink role lists what its client may receive. Applied at
        every start (the broker is stopped), so an older home is fixed too."""
        config = json.loads(self.dynsec_file.read_text())
        access = config.setdefault("defaultACLAccess", {})
        if access.get("publishClientReceive") is not False:
            access["publishClientReceive"] = False
            self.dynsec_file.write_text(json.dumps(config, indent=1))
            self.dynsec_file.chmod(0o600)

    def _init_dynsec(self) -> None:
        binary = shutil.which("mosquitto_ctrl") or "/usr/bin/mosquitto_ctrl"
        try:
            subprocess.run(
                [binary, "dynsec", "init", str(self.dynsec_file), ADMIN_USER, self.admin_password],
                check=True,
                capture_output=True,
                timeout=30,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            raise ServiceError(f"mosquitto_ctrl dynsec init failed: {exc}") from exc
        config = json.loads(self.dynsec_file.read_text())
        # The stack's admin is the API's login: it publishes commands and twins on
        # GramLink topics, not only administers dynamic security. Ingest has its
        # own account (gramlink.broker_accounts, made by Stack.up).
        for role in config["roles"]:
            if role["rolename"] == "admin":
                role["acls"].append(
                    {"acltype": "publishClientSend", "topic": "gl/#", "allow": True}
                )
        self.dynsec_file.write_text(json.dumps(config, indent=1))
        self.dynsec_file.chmod(0o600)

    @property
    def tls_url(self) -> str:
        """``mqtts://localhost:port`` of the TLS listener (the name its certificate carries)."""
        if self.tls is None:
            raise ServiceError("this broker has no TLS listener")
        return f"mqtts://localhost:{self.tls.port}"

    def _tls_listener(self) -> list[str]:
        if self.tls is None:
            return []
        lines = [
            f"listener {self.tls.port} {self.bind}",
            f"certfile {self.tls.certfile}",
            f"keyfile {self.tls.keyfile}",
        ]
        if self.tls.client_ca is not None:
            lines += [f"cafile {self.tls.client_ca}", "require_certificate true"]
        return lines

    def _login_files(self) -> list[str]:
        if not self.login_files:
            return []
        return [f"password_file {self.password_file}", f"acl_file {self.acl_file}"]

    def _config(self) -> str:
        return "\n".join(
            [
                f"# written by gramlink; home {self.home}",
                "per_listener_settings false",
                "allow_anonymous false",
                f"listener {self.port} {self.bind}",
                "set_tcp_nodelay true",
                *self._tls_listener(),
                f"plugin {dynsec_plugin()}",
                f"plugin_opt_config_file {self.dynsec_file}",
                *self._login_files(),
                f"user {getpass.getuser()}",
                "persistence true",
                f"persistence_location {self.home}/",
                "autosave_interval 1",
                "persistent_client_expiration 14d",
                f"max_queued_messages {MAX_QUEUED_MESSAGES}",
                f"max_queued_bytes {MAX_QUEUED_BYTES}",
                "max_inflight_messages 1000",
                "max_packet_size 4194304",
                "max_keepalive 300",
                f"log_dest file {self.home}/mosquitto.log",
                "log_type error",
                "log_type warning",
                "log_type notice",
                "connection_messages false",
                "log_timestamp_format %Y-%m-%dT%H:%M:%S",
                "",
            ]
        )


def wait_or_false(check: Callable[[], bool], timeout: float) -> bool:
    try:
        wait_until(check, timeout, "connect")
    except ServiceError:
        return False
    return True
