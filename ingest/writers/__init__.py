"""InfluxDB writers: take a body of line protocol, raise ``ingest.errors`` on failure.

``v1``: the 1.x HTTP ``/write`` (Debian's InfluxDB 1.6). ``v2``: influxdb-client's
write API (InfluxDB 2.x, 3.x, 1.8+). Both are used by one thread each at a time.
"""

from __future__ import annotations

from typing import Protocol


class Writer(Protocol):
    def write(self, body: bytes) -> None:
        """Store the lines; raise WriteUnavailable / WriteRejected / WriteFatal."""

    def close(self) -> None: ...
