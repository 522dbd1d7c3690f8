"""Logins kept in the central broker's ``password_file`` and ``acl_file``.

Mosquitto 2.0's dynamic-security plugin rewrites its whole JSON file after every
command, so provisioning N devices through it costs O(N^2); a reload of these two
files costs O(N): 25-72 ms with 10,000-30,000 logins (docs/api.md).

- ``clients.passwd``: ``username:$7$101$salt$hash`` (PBKDF2-SHA512, the format
  ``mosquitto_passwd`` writes); only enabled logins are in it, so removing a line
  and reloading both refuses new connections and drops an open one.
- ``clients.acl``: fixed ``pattern`` lines that give each username
  ``{centre}/{device}`` exactly its own device topics, plus one ``user`` section per
  gateway for its centre's device channels and its own ``_gateway/...`` topics, and
  no other gateway's storage receipts (per-user sections make the broker's parser
  quadratic, so devices get none).

A change set is written under a file lock (several API processes may share the
directory), the files are replaced atomically, the broker gets SIGHUP, and we wait
until it accepts a marker login written with this change set: then the reload that
carries it is live.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import logging
import os
import secrets
import signal
import ssl
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

import paho.mqtt.client as mqtt

from api.broker import BrokerAccess
from api.logins import LoginChange
from contract.edge import ALERT_CHANNEL, RULES_ACK_CHANNEL, RULES_CHANNEL
from contract.metrics import DeviceKind
from contract.provisioning import (
    DEVICE_RECEIVES,
    DEVICE_SENDS,
    DYNSEC_ACK_CHANNEL,
    DYNSEC_CHANNEL,
    DynsecOp,
)
from contract.receipts import RECEIPT_CHANNEL
from contract.topics import PREFIX, Channel
from mqttlink.endpoint import Endpoint
from mqttlink.reasons import reason

log = logging.getLogger(__name__)

PASSWORD_FILE: Final = "clients.passwd"
ACL_FILE: Final = "clients.acl"
MARKER_USER: Final = "_gl_reload"
PBKDF2_ITERATIONS: Final = 101  # what mosquitto_passwd uses
SALT_BYTES: Final = 12


def password_hash(password: str, salt: bytes | None = None) -> str:
    """The ``$7$`` hash Mosquitto 2.0 checks a CONNECT password against."""
    salt = salt if salt is not None else os.urandom(SALT_BYTES)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, PBKDF2_ITERATIONS)
    encoded_salt = base64.b64encode(salt).decode()
    return f"$7${PBKDF2_ITERATIONS}${encoded_salt}${base64.b64encode(digest).decode()}"


# What a gateway relays and sends for itself, and what it reads, under its centre
# (``+``: any device of the centre); Mosquitto's acl_file checks ``deny`` lines
# before any grant, so receipts are granted by name (only the gateway's own) and
# never by a wildcard that would let a gateway write or read another's.
GATEWAY_WRITES: Final = (
    *(channel.value for channel in DEVICE_SENDS),
    Channel.GATEWAY_BATCH.value,
    DYNSEC_ACK_CHANNEL,
)
GATEWAY_READS: Final = tuple(channel.value for channel in DEVICE_RECEIVES)


def gateway_acl(username: str, centre: str) -> list[str]:
    """The acl_file section of one gateway (``username`` is ``{centre}/{gateway}``)."""
    base = f"{PREFIX}/{centre}"
    own = f"{PREFIX}/{username}"
    lines = [f"user {username}"]
    lines += [f"topic write {base}/+/{channel}" for channel in GATEWAY_WRITES]
    lines += [f"topic read {base}/+/{channel}" for channel in GATEWAY_READS]
    lines += [f"topic read {own}/{DYNSEC_CHANNEL}", f"topic read {own}/{RECEIPT_CHANNEL}"]
    # its edge rule set (in), the answers to it and the alerts it raised (out)
    lines += [f"topic read {own}/{RULES_CHANNEL}", f"topic write {own}/{RULES_ACK_CHANNEL}"]
    lines += [f"topic write {own}/{ALERT_CHANNEL}"]
    return lines


def acl_text(gateways: dict[str, str]) -> str:
    """The ACL file: device patterns, then one section per gateway username."""
    lines = ["# written by the GramLink API; a device's username is {centre}/{device}"]
    lines += [f"pattern write {PREFIX}/%u/{channel}" for channel in DEVICE_SENDS]
    lines += [f"pattern read {PREFIX}/%u/{channel}" for channel in DEVICE_RECEIVES]
    for username, centre in sorted(gateways.items()):
        lines += ["", *gateway_acl(username, centre)]
    return "\n".join(lines) + "\n"


def _parse_gateways(text: str) -> dict[str, str]:
    gateways: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("user "):
            username = line[5:]
            gateways[username] = username.split("/", 1)[0]
    return gateways


def _parse_passwords(text: str) -> dict[str, str]:
    entries: dict[str, str] = {}
    for line in text.splitlines():
        username, sep, hashed = line.partition(":")
        if sep and username:
            entries[username] = hashed
    return entries


class BrokerFilesError(RuntimeError):
    """The broker could not be signalled or did not load the files in time (retryable)."""


class FileLogins:
    def __init__(
        self,
        directory: Path,
        pid_file: Path,
        access: BrokerAccess,
    ) -> None:
        self.directory = directory
        self.pid_file = pid_file
        self.endpoint, self.timeout = access.endpoint, access.timeout_s
        self._tls = access.ssl_context()  # built once: the probe runs at every change
        self._lock = threading.Lock()

    @property
    def password_file(self) -> Path:
        return self.directory / PASSWORD_FILE

    @property
    def acl_file(self) -> Path:
        return self.directory / ACL_FILE

    def apply(self, changes: list[LoginChange]) -> None:
        with self._locked():
            passwords = _parse_passwords(_read(self.password_file))
            gateways = _parse_gateways(_read(self.acl_file))
            _merge(passwords, gateways, changes)
            self._publish(passwords, gateways)

    def replace_all(self, changes: Iterable[LoginChange]) -> None:
        """Rewrite both files from scratch (the registry is the source of truth)."""
        passwords: dict[str, str] = {}
        gateways: dict[str, str] = {}
        _merge(passwords, gateways, list(changes))
        with self._locked():
            self._publish(passwords, gateways)

    def undo(self, changes: Iterable[LoginChange]) -> None:
        removals = [
            LoginChange(DynsecOp.DELETE, c.centre, c.device, c.kind, enabled=False) for c in changes
        ]
        self.apply(removals)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        with self._lock, open(self.directory / ".clients.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _publish(self, passwords: dict[str, str], gateways: dict[str, str]) -> None:
        marker = secrets.token_urlsafe(18)
        passwords[MARKER_USER] = password_hash(marker)
        body = "".join(f"{user}:{hashed}\n" for user, hashed in passwords.items())
        _replace(self.acl_file, acl_text(gateways))
        _replace(self.password_file, body)
        started = time.monotonic()
        self._reload()
        self._wait_accepted(MARKER_USER, marker)
        log.info(
            "event=broker_files_applied logins=%d gateways=%d reload_ms=%.0f",
            len(passwords) - 1,
            len(gateways),
            (time.monotonic() - started) * 1000,
        )

    def _reload(self) -> None:
        try:
            pid = int(self.pid_file.read_text().strip())
            # A stale PID file may name another process by now: never signal that.
            if b"mosquitto" not in Path(f"/proc/{pid}/cmdline").read_bytes():
                raise BrokerFilesError(f"PID {pid} in {self.pid_file} is not a mosquitto process")
            os.kill(pid, signal.SIGHUP)
        except (OSError, ValueError) as exc:
            raise BrokerFilesError(f"cannot signal the broker ({self.pid_file}): {exc}") from exc

    def _wait_accepted(self, username: str, password: str) -> None:
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if login_accepted(self.endpoint, username, password, deadline, self._tls):
                return
            time.sleep(0.02)
        raise BrokerFilesError(f"the broker did not load {self.password_file} in {self.timeout} s")


def _merge(passwords: dict[str, str], gateways: dict[str, str], changes: list[LoginChange]) -> None:
    for change in changes:
        username = change.username
        keep = change.enabled and change.op in (DynsecOp.UPSERT, DynsecOp.ENABLE)
        if not keep:
            passwords.pop(username, None)
            gateways.pop(username, None)
            continue
        if change.password is None:
            raise ValueError(f"{change.op} of {username} needs its password")
        passwords[username] = password_hash(change.password)
        if change.kind is DeviceKind.GATEWAY:
            gateways[username] = change.centre


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except FileNotFoundError:
        return ""


def _replace(path: Path, text: str) -> None:
    """Write next to ``path`` and rename over it: the broker never reads half a file."""
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
    with os.fdopen(fd, "w") as out:
        out.write(text)
        out.flush()
        os.fsync(out.fileno())
    os.replace(temporary, path)


def login_accepted(
    endpoint: Endpoint,
    username: str,
    password: str,
    deadline: float,
    tls: ssl.SSLContext | None = None,
) -> bool:
    """One CONNECT with these credentials: True if the CONNACK's reason code is success.

    A one-shot probe, not a session, so it is a bare paho client rather than an
    :class:`mqttlink.paho_link.MqttLink`; ``tls`` is the API's context for ``mqtts://``.
    """
    outcome: dict[str, bool] = {}

    def on_connect(_c: mqtt.Client, _u: Any, _f: Any, rc: mqtt.ReasonCode, _p: Any) -> None:
        outcome["ok"] = not reason(rc.value).failure

    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=f"gl-api-reload-{uuid.uuid4().hex[:8]}",
        protocol=mqtt.MQTTv5,
    )
    client.username_pw_set(username, password)
    if tls is not None:
        client.tls_set_context(tls)
    client.on_connect = on_connect
    try:
        client.connect(endpoint.host, endpoint.port, keepalive=10)
        while "ok" not in outcome and time.monotonic() < deadline:
            client.loop(timeout=0.05)
        client.disconnect()
        client.loop(timeout=0.01)
    except OSError:
        return False
    return outcome.get("ok", False)
