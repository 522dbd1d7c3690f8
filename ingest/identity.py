"""Which worker this is on its host: its MQTT client id and its metrics port.

By default a worker claims the lowest free slot N under ``state_dir``
(``runtime.slots``: a lock held for the life of the process) and becomes
``ingest-{host}-{N}`` with metrics on ``metrics_port_base + N - 1`` (9108,
9109, ...). Two workers started with the same settings therefore get distinct
ids (both consume through the shared subscription) and distinct ports, and a
restarted worker gets its old slot, id and persistent session back. An
explicit ``client_id`` or ``metrics_port`` wins over the slot's.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from ingest.errors import ConfigError
from ingest.settings import ENV_PREFIX, IngestSettings
from runtime.slots import SlotError, claim, host_label

SLOT_NAME = "ingest"


def slot_client_id(number: int, host: str | None = None) -> str:
    """The client id of slot ``number`` on this host."""
    return f"ingest-{host or host_label()}-{number}"


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
        port = settings.metrics_port_base + slot.number - 1
        yield settings.model_copy(
            update={
                "client_id": settings.client_id or slot_client_id(slot.number),
                "metrics_port": port if settings.metrics_port is None else settings.metrics_port,
            }
        )
