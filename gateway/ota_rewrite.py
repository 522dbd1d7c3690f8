"""Point a relayed ``ota`` command at the gateway's copy of the firmware.

Called by the downlink for every ``cmd`` it relays to the centre broker: an
``ota`` whose ``url`` is the API's gets the gateway's local URL instead
(``{firmware_url}/firmware/{sha256}``); the origin is remembered by the cache
and a prefetch starts, so the file crosses the uplink once for the centre.
Every other command passes unchanged. The command's id, expiry and digest are
kept, so the device still checks the SHA-256 the API computed.
"""

from __future__ import annotations

from contract.firmware import SHA256_RE, local_path
from contract.messages import Command
from gateway.firmware_cache import FirmwareCache


class OtaRewrite:
    def __init__(self, cache: FirmwareCache, local_url: str) -> None:
        self.cache = cache
        self.local_url = local_url.rstrip("/")
        self.rewritten = 0

    def __call__(self, command: Command, payload: bytes) -> bytes:
        if command.name != "ota":
            return payload
        url, digest = command.args.get("url"), command.args.get("sha256")
        if not isinstance(url, str) or not isinstance(digest, str):
            return payload  # the device refuses it with a reason of its own
        digest = digest.lower()
        if not SHA256_RE.match(digest) or url.startswith(self.local_url):
            return payload
        self.cache.remember(digest, url)
        self.cache.prefetch(digest)
        args = {**command.args, "url": self.local_url + local_path(digest)}
        self.rewritten += 1
        return command.model_copy(update={"args": args}).model_dump_json(exclude_none=True).encode()
