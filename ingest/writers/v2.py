"""The InfluxDB 2 writer: influxdb-client's synchronous write API (url, token, org, bucket).

Batching, acknowledgement and retries are ingest's own (the same for both
writers), so the client is used in SYNCHRONOUS mode: every call is one HTTP
request to ``/api/v2/write`` whose outcome decides the acknowledgement.
influxdb-client / urllib3 errors are mapped to ``ingest.errors`` here only.
"""

from __future__ import annotations

from influxdb_client import InfluxDBClient, WritePrecision
from influxdb_client.client.write_api import SYNCHRONOUS
from influxdb_client.rest import ApiException
from urllib3.exceptions import HTTPError as Urllib3Error

from ingest.errors import WriteUnavailable, classify
from ingest.settings import IngestSettings


class V2Writer:
    """A client and write API of its own; not shared between threads."""

    def __init__(self, settings: IngestSettings) -> None:
        assert settings.influx_token is not None  # checked by the settings
        self._bucket = settings.influx_bucket or ""
        self._org = settings.influx_org or ""
        self._client = InfluxDBClient(
            url=settings.influx_url,
            token=settings.influx_token.get_secret_value(),
            org=self._org,
            timeout=int(settings.write_timeout_s * 1000),
            enable_gzip=settings.influx_gzip,
            retries=False,
        )
        self._api = self._client.write_api(write_options=SYNCHRONOUS)

    def write(self, body: bytes) -> None:
        try:
            self._api.write(
                bucket=self._bucket,
                org=self._org,
                record=body,
                write_precision=WritePrecision.NS,  # type: ignore[arg-type]
            )
        except ApiException as exc:
            status = int(exc.status or 0)
            detail = str(exc.body or exc.reason or "")[:500]
            if status == 0:
                raise WriteUnavailable(detail or "no answer") from exc
            raise classify(status, detail) from exc
        except (Urllib3Error, OSError) as exc:
            raise WriteUnavailable(f"{type(exc).__name__}: {exc}"[:300]) from exc

    def close(self) -> None:
        self._client.close()
