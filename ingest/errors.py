"""Errors of the ingest worker.

::

    IngestError
    ├── ConfigError             permanent: a setting is wrong; the process stops at start
    ├── StorageMissing          permanent at start: no such database/bucket (exit 6, run
    │                           ``gramlink influx init``); found by ``storage.check``
    └── WriteError              a write to InfluxDB failed
        ├── WriteUnavailable    retryable: network error, timeout, 5xx, 429
        │   └── StorageGone     404: the database/bucket went away while running; retried,
        │                       one error line a minute, until someone creates it again
        ├── WriteRejected       permanent for these lines: 400/413 (bisected, bad lines quarantined)
        └── WriteFatal          permanent for the process: 401/403 (credentials)

Writers map httpx / influxdb-client errors to this tree in one place each
(``writers/v1.py``, ``writers/v2.py``). Bad input is never an exception that
leaves a worker: it is counted and quarantined (``quarantine.py``).
"""

from __future__ import annotations


class IngestError(Exception):
    """Base of every ingest error."""


class ConfigError(IngestError):
    """A setting is missing or invalid (permanent)."""


class StorageMissing(IngestError):
    """The database or bucket does not exist at start: ``gramlink influx init`` creates it."""


class WriteError(IngestError):
    """A write to InfluxDB failed."""

    def __init__(self, detail: str, status: int | None = None) -> None:
        super().__init__(detail if status is None else f"HTTP {status}: {detail}")
        self.detail = detail
        self.status = status


class WriteUnavailable(WriteError):
    """InfluxDB down, slow or answering 5xx: retry later, keep the messages unacknowledged."""


class StorageGone(WriteUnavailable):
    """404: the database or bucket is missing; retried like an outage (nothing acknowledged)."""


class WriteRejected(WriteError):
    """InfluxDB refused (some of) these lines: find them, quarantine them, write the rest."""


class WriteFatal(WriteError):
    """Credentials refused: retrying cannot help; the worker stops."""


def classify(status: int, detail: str) -> WriteError:
    """The error for an HTTP status of a failed write (shared by both writers)."""
    if status in (401, 403):
        return WriteFatal(detail, status)
    if status == 404:
        return StorageGone(detail, status)
    if status in (400, 413, 422):
        return WriteRejected(detail, status)
    return WriteUnavailable(detail, status)
