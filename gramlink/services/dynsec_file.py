"""The dynamic-security plugin's JSON file, made before the broker first loads it.

Both the stack's brokers and a centre broker installed by ``gramlink
centre-broker install`` start from the same file: an ``admin`` client made by
``mosquitto_ctrl dynsec init``, whose role may also publish on ``gl/#`` (it
relays commands and twins), and delivery denied unless a role allows it.

Errors: :class:`~gramlink.services.process.ServiceError` (one line).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Final

from gramlink.services.process import ServiceError

ADMIN_USER: Final = "admin"


def init_dynsec(path: Path, admin_password: str, admin_user: str = ADMIN_USER) -> None:
    """Write a new dynsec file with ``admin_user`` (mode 0600); ``path`` must not exist."""
    binary = shutil.which("mosquitto_ctrl") or "/usr/bin/mosquitto_ctrl"
    try:
        subprocess.run(
            [binary, "dynsec", "init", str(path), admin_user, admin_password],
            check=True,
            capture_output=True,
            timeout=30,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise ServiceError(f"mosquitto_ctrl dynsec init failed: {exc}") from exc
    config = json.loads(path.read_text())
    # The admin is also the relay's login (the API centrally, the gateway at a
    # centre): it publishes commands and twins on GramLink topics, not only
    # administers dynamic security.
    for role in config["roles"]:
        if role["rolename"] == "admin":
            role["acls"].append({"acltype": "publishClientSend", "topic": "gl/#", "allow": True})
    _write(path, config)
    deny_delivery_by_default(path)


def deny_delivery_by_default(path: Path) -> None:
    """Mosquitto's own ACL file grants every SUBSCRIBE and checks only delivery,
    so delivery must be denied unless a role allows it (dynsec allows it by
    default); each GramLink role lists what its client may receive. Only while
    the broker is stopped (the plugin rewrites the file)."""
    config = json.loads(path.read_text())
    access = config.setdefault("defaultACLAccess", {})
    if access.get("publishClientReceive") is not False:
        access["publishClientReceive"] = False
        _write(path, config)


def _write(path: Path, config: object) -> None:
    path.write_text(json.dumps(config, indent=1))
    path.chmod(0o600)
