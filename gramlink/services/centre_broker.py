"""The centre broker's configuration: the shipped template, rendered and installed.

``centre_broker.conf`` (package data beside this module) is the one
configuration of every centre's Mosquitto and of the gateway tests' centre
broker. :func:`render` fills in only the site's values (listener, TLS files,
dynamic-security paths); :func:`install` writes the drop-in into a
``conf.d`` directory and, the first time, the dynamic-security file with its
``admin`` client. It is idempotent: run again, it rewrites nothing that is
already so and reports what it did, line by line.

Errors: :class:`~gramlink.services.process.ServiceError` (one line): the
plugin or ``mosquitto_ctrl`` is missing, a path cannot be written.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from string import Template
from typing import Final

from gramlink.services.dynsec_file import ADMIN_USER, init_dynsec
from gramlink.services.process import ServiceError

TEMPLATE: Final = "centre_broker.conf"
DROP_IN_NAME: Final = "gramlink-centre.conf"
DEBIAN_CONF_DIR: Final = Path("/etc/mosquitto/conf.d")
DEBIAN_DYNSEC_FILE: Final = Path("/var/lib/mosquitto/dynamic-security.json")
DYNSEC_PLUGIN_CANDIDATES: Final = (
    "/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so",
    "/usr/lib/aarch64-linux-gnu/mosquitto_dynamic_security.so",
    "/usr/lib/arm-linux-gnueabihf/mosquitto_dynamic_security.so",
    "/usr/lib/mosquitto_dynamic_security.so",
)


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


@dataclass(frozen=True)
class CentreBroker:
    """Where a centre broker's configuration goes and what it listens on."""

    conf_dir: Path = DEBIAN_CONF_DIR
    dynsec_file: Path = DEBIAN_DYNSEC_FILE
    listen_address: str = "0.0.0.0"
    port: int = 1883
    tls: TlsListener | None = None

    @property
    def conf_file(self) -> Path:
        return self.conf_dir / DROP_IN_NAME


def template_text() -> str:
    return resources.files("gramlink.services").joinpath(TEMPLATE).read_text()


def render(broker: CentreBroker, plugin: str | None = None) -> str:
    """The shipped template with this site's values; nothing else differs."""
    if broker.tls is None:
        tls = "# (no TLS listener: gramlink centre-broker install --tls-port PORT ...)"
    else:
        lines = [
            f"listener {broker.tls.port} {broker.listen_address}",
            f"certfile {broker.tls.certfile}",
            f"keyfile {broker.tls.keyfile}",
        ]
        if broker.tls.client_ca is not None:
            lines += [f"cafile {broker.tls.client_ca}", "require_certificate true"]
        tls = "\n".join(lines)
    return Template(template_text()).substitute(
        dynsec_plugin=plugin or dynsec_plugin(),
        dynsec_file=broker.dynsec_file,
        listen_address=broker.listen_address,
        port=broker.port,
        tls_listener=tls,
    )


def install(broker: CentreBroker, admin_password: str) -> list[str]:
    """Write the drop-in and, if absent, the dynsec file; returns what was done.

    ``admin_password`` is used only when the dynsec file is created; an existing
    file (and so its admin's password) is kept.
    """
    done: list[str] = []
    text = render(broker)
    try:
        broker.conf_dir.mkdir(parents=True, exist_ok=True)
        if broker.conf_file.exists() and broker.conf_file.read_text() == text:
            done.append(f"unchanged {broker.conf_file}")
        else:
            verb = "updated" if broker.conf_file.exists() else "wrote"
            tmp = broker.conf_file.with_name(broker.conf_file.name + ".tmp")
            tmp.write_text(text)
            tmp.chmod(0o644)
            os.replace(tmp, broker.conf_file)
            done.append(f"{verb} {broker.conf_file}")
        if broker.dynsec_file.exists():
            done.append(f"kept {broker.dynsec_file} (its admin password is unchanged)")
        else:
            broker.dynsec_file.parent.mkdir(parents=True, exist_ok=True)
            init_dynsec(broker.dynsec_file, admin_password)
            _give_to_directory_owner(broker.dynsec_file)
            done.append(f"created {broker.dynsec_file} with the dynsec admin {ADMIN_USER!r}")
    except OSError as exc:
        raise ServiceError(f"centre broker install: {exc}") from exc
    return done


def _give_to_directory_owner(path: Path) -> None:
    """Run as root, hand the file to its directory's owner (``mosquitto`` in
    ``/var/lib/mosquitto``): the broker drops root and the plugin rewrites it."""
    if os.geteuid() != 0:
        return
    parent = path.parent.stat()
    os.chown(path, parent.st_uid, parent.st_gid)


def main_conf_includes(main_conf: Path, conf_dir: Path) -> bool | None:
    """Does ``main_conf`` load ``conf_dir``? None when there is no such file."""
    try:
        lines = main_conf.read_text().splitlines()
    except FileNotFoundError:
        return None
    wanted = str(conf_dir).rstrip("/")
    for line in lines:
        key, _, value = line.strip().partition(" ")
        if key == "include_dir" and value.strip().rstrip("/") == wanted:
            return True
    return False
