"""A Mosquitto 2.0 broker with the dynamic-security plugin, anonymous access off.

Two configurations. The central broker's (the default, ``gramlink stack``) is
written here: it queues up to 256 MiB per offline persistent session (not
Mosquitto's default of 1,000 messages) and saves its persistence file every
second, so a consumer that is down for minutes, or a broker restart, loses
nothing. A centre broker (``centre=True``) runs exactly the shipped
``centre_broker.conf`` as installed by ``gramlink centre-broker install``: a
drop-in in ``home/conf.d`` loaded by a main file that stands in for Debian's
stock ``mosquitto.conf`` (persistence location, log, ``include_dir``).
"""

from __future__ import annotations

import getpass
import shutil
import signal
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Final

import paho.mqtt.client as mqtt

from gramlink.services.centre_broker import CentreBroker, TlsListener, dynsec_plugin, install
from gramlink.services.dynsec_file import ADMIN_USER, deny_delivery_by_default, init_dynsec
from gramlink.services.process import PidProcess, ServiceError, port_in_use, wait_until

__all__ = ["ADMIN_USER", "MosquittoService", "TlsListener"]

# The central broker's queue per offline session (ingest's, a gateway's downlink):
# bounded by payload bytes. The message count must not bind first, also for
# devices publishing straight here (readings of about 60 bytes and up):
# 256 MiB / 60 B is about 4.5 million (it was 2,000,000, which bound at 120 MB).
MAX_QUEUED_BYTES: Final = 256 * 1024 * 1024
MAX_QUEUED_MESSAGES: Final = 5_000_000


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
        centre: bool = False,
    ) -> None:
        if centre and login_files:
            raise ServiceError("a centre broker has no login files (dynamic security only)")
        self.home = home
        self.centre = centre
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
        if self.centre:
            install(self.centre_broker, self.admin_password)
        elif not self.dynsec_file.exists():
            init_dynsec(self.dynsec_file, self.admin_password)
        deny_delivery_by_default(self.dynsec_file)  # also fixes an older home
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

    @property
    def centre_broker(self) -> CentreBroker:
        """Where ``gramlink centre-broker install`` puts a centre broker's files here."""
        return CentreBroker(
            conf_dir=self.home / "conf.d",
            dynsec_file=self.dynsec_file,
            listen_address=self.bind,
            port=self.port,
            tls=self.tls,
        )

    def _config(self) -> str:
        return self._debian_main_config() if self.centre else self._central_config()

    def _debian_main_config(self) -> str:
        """What Debian's stock mosquitto.conf says, with this home's paths."""
        return "\n".join(
            [
                f"# stands in for Debian's /etc/mosquitto/mosquitto.conf; home {self.home}",
                f"user {getpass.getuser()}",
                "persistence true",
                f"persistence_location {self.home}/",
                f"log_dest file {self.home}/mosquitto.log",
                f"include_dir {self.centre_broker.conf_dir}",
                "",
            ]
        )

    def _central_config(self) -> str:
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
