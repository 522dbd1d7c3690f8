"""The start-up check that the worker's database (v1) or bucket (v2) exists.

Without it a worker would take messages, fail every write with 404 and retry
for ever; a missing database at start is a setup step not done, so the worker
stops with exit code 6 and one line naming ``gramlink influx init``. InfluxDB
not answering at start is not this check's business: the writes retry it.

v1 writes an empty body to ``/write`` with the writer's own credentials and
database/retention policy (InfluxDB 1.x answers 204, or 404 ``database not
found``, or 500 ``retention policy not found``). v2 looks the bucket up by name
(NOT tested against a real 2.x server: none on these machines).
"""

from __future__ import annotations

import logging

from ingest.errors import StorageGone, StorageMissing, WriteError
from ingest.settings import IngestSettings
from runtime.logs import kv

log = logging.getLogger("ingest.storage")
INIT_HINT = "create it with gramlink influx init (same settings)"


def check(settings: IngestSettings) -> None:
    """Raise :class:`StorageMissing` if the database/bucket is not there."""
    if settings.writer == "v2":
        _check_v2(settings)
    else:
        _check_v1(settings)


def _check_v1(settings: IngestSettings) -> None:
    from ingest.writers.v1 import V1Writer

    where = f"database {settings.influx_database!r} at {settings.influx_url}"
    writer = V1Writer(settings)
    try:
        writer.write(b"")
    except StorageGone as exc:
        raise StorageMissing(f"InfluxDB {where} does not exist: {INIT_HINT}") from exc
    except WriteError as exc:
        if "retention policy not found" in exc.detail:
            rp = settings.influx_retention_policy
            raise StorageMissing(
                f"InfluxDB retention policy {rp!r} of {where} does not exist: {INIT_HINT} "
                "or change GRAMLINK_INGEST_INFLUX_RETENTION_POLICY"
            ) from exc
        log.warning(kv("storage_check_skipped", error=str(exc)[:200], action="writes will retry"))
    finally:
        writer.close()


def _check_v2(settings: IngestSettings) -> None:
    from influxdb_client import InfluxDBClient
    from influxdb_client.rest import ApiException
    from urllib3.exceptions import HTTPError as Urllib3Error

    assert settings.influx_token is not None  # checked by the settings
    bucket = settings.influx_bucket or ""
    try:
        with InfluxDBClient(
            url=settings.influx_url,
            token=settings.influx_token.get_secret_value(),
            org=settings.influx_org or "",
            timeout=int(settings.write_timeout_s * 1000),
            retries=False,
        ) as client:
            found = client.buckets_api().find_bucket_by_name(bucket)
    except (ApiException, Urllib3Error, OSError) as exc:
        # A token that may write but not list buckets lands here too.
        log.warning(kv("storage_check_skipped", error=str(exc)[:200], action="writes will retry"))
        return
    if found is None:
        raise StorageMissing(
            f"InfluxDB bucket {bucket!r} at {settings.influx_url} does not exist: {INIT_HINT}"
        )
