"""How readings are laid out in InfluxDB (shared by ingest, which writes, and api, which reads).

One measurement per family of kinds; tags ``centre``, ``device``, ``model``
(low cardinality only); fields are the metrics plus ``seq``.
"""

from __future__ import annotations

from typing import Final

TAGS: Final = ("centre", "device", "model")
SEQ_SLOTS: Final = 1_000_000
QUARANTINE_MEASUREMENT: Final = "quarantine"
PIPELINE_MEASUREMENT: Final = "pipeline"


def storage_time_ns(ts_ms: int, seq: int) -> int:
    """The stored timestamp (ns) of a reading.

    Device time gives the millisecond; the sub-millisecond digits carry ``seq``
    so two readings of one device in the same millisecond do not overwrite each
    other, while a replay of the same reading lands on the same point.
    """
    return ts_ms * SEQ_SLOTS + seq % SEQ_SLOTS
