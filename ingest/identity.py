"""Which worker this is on its host: its MQTT client id and its metrics port.

By default a worker claims the lowest free slot N under ``state_dir``
(``runtime.slots``: a lock held for the life of the process) and becomes
``ingest-{host}-{N}`` with metrics on ``9108 + N - 1``. Two workers started with
the same settings therefore get distinct ids (both consume through the shared
subscription) and distinct ports, and a restarted worker gets its old slot, id
and persistent session back. An explicit ``client_id`` or ``metrics_port`` wins
over the slot's.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from ingest.errors import ConfigError
from ingest.settings import ENV_PREFIX, IngestSettings
from runtime.slots import SlotError, claim, host_label

METRICS_PORT_BASE = 9108
SLOT_NAME = "ingest"


def slot_identity(number: int, host: str | None = None) -> tuple[str, int]:
    """(client id, metrics port) of slot ``number`` on this host."""
    return f"ingest-{host or host_label()}-{number}", METRICS_PORT_BASE + number - 1


@contextmanager
def identity(settings: IngestSettings) -> Iterator[IngestSettings]:
    """``settings`` with a client id and a metrics port, holding a slot while needed."""
    if settings.client_id and settings.metrics_port is not None:
        yield settings
        return
    try:
        slot = claim(settings.state_dir, SLOT_NAME)
    except SlotError as exc:
        raise ConfigError(f"setting {ENV_PREFIX}STATE_DIR (--state-dir): {exc}") from exc
    with slot:
        client_id, port = slot_identity(slot.number)
        yield settings.model_copy(
            update={
                "client_id": settings.client_id or client_id,
                "metrics_port": port if settings.metrics_port is None else settings.metrics_port,
            }
        )
