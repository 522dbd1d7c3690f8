"""The InfluxDB 1.x writer: ``POST /write?db=&rp=&precision=ns`` over a persistent connection.

httpx errors are mapped to ``ingest.errors`` here and nowhere else.
"""

from __future__ import annotations

import gzip

import httpx

from ingest.errors import WriteUnavailable, classify
from ingest.settings import IngestSettings


class V1Writer:
    """One keep-alive HTTP connection to ``/write``; not shared between threads."""

    def __init__(self, settings: IngestSettings) -> None:
        params = {"db": settings.influx_database, "precision": "ns"}
        if settings.influx_retention_policy:
            params["rp"] = settings.influx_retention_policy
        auth = None
        if settings.influx_username:
            password = (
                settings.influx_password.get_secret_value() if settings.influx_password else ""
            )
            auth = httpx.BasicAuth(settings.influx_username, password)
        self._gzip = settings.influx_gzip
        headers = {"Content-Type": "text/plain; charset=utf-8"}
        if self._gzip:
            headers["Content-Encoding"] = "gzip"
        self._client = httpx.Client(
            base_url=settings.influx_url,
            params=params,
            auth=auth,
            headers=headers,
            timeout=httpx.Timeout(
                settings.write_timeout_s, connect=min(5.0, settings.write_timeout_s)
            ),
            limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
        )

    def write(self, body: bytes) -> None:
        content = gzip.compress(body, compresslevel=1) if self._gzip else body
        try:
            response = self._client.post("/write", content=content)
        except httpx.HTTPError as exc:
            raise WriteUnavailable(f"{type(exc).__name__}: {exc}"[:300]) from exc
        if response.status_code == 204:
            return
        raise classify(response.status_code, response.text[:500])

    def close(self) -> None:
        self._client.close()
