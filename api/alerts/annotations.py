"""Alert events into InfluxDB as the ``alerts`` measurement, so dashboards can annotate them.

One point per transition (pending, firing, resolved): tags ``rule``,
``severity``, ``centre``, ``device`` (``-`` for a centre's alert), ``state``;
fields ``id`` (the alert's), ``value``, ``clinical``, ``count``; the device time of the
transition, ms precision. Written with the 1.x HTTP ``/write`` (what the API's
sequence accounting and ingest's v1 writer use), after the round's transaction
committed. InfluxDB down is not the engine's problem: the points wait in a
bounded buffer (``MAX_BUFFERED``; when full the oldest are dropped and counted)
and go with a later round, tried again at most every ``RETRY_S`` (a slow
InfluxDB never holds up more than one round in ``RETRY_S``); the first failure
is logged, then once a minute.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Iterable
from typing import Final

import httpx

from api.alerts.lifecycle import Annotation
from runtime.logs import Throttle

log = logging.getLogger(__name__)
MEASUREMENT: Final = "alerts"
MAX_BUFFERED: Final = 10_000
RETRY_S: Final = 15.0


def _tag(value: str) -> str:
    return value.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=").replace(" ", "\\ ")


def line(a: Annotation) -> str:
    tags = (
        f"{MEASUREMENT},rule={_tag(a.rule)},severity={_tag(a.severity)},"
        f"centre={_tag(a.centre)},device={_tag(a.device or '-')},state={_tag(a.state)}"
    )
    fields = [f'id="{a.alert}"', f"clinical={'true' if a.clinical else 'false'}"]
    fields.append(f"count={a.count}i")
    if a.value is not None:
        fields.append(f"value={a.value!r}")
    return f"{tags} {','.join(fields)} {a.at_ms}"


class AlertAnnotations:
    def __init__(self, url: str, database: str, user: str, password: str, timeout: float) -> None:
        self._database = database
        self._http = httpx.Client(base_url=url, timeout=timeout, auth=(user, password))
        self._buffer: deque[str] = deque()
        self._throttle = Throttle(log)
        self._failing = False
        self._retry_at = 0.0
        self.written = 0
        self.dropped = 0

    def close(self) -> None:
        self._http.close()

    def write(self, annotations: Iterable[Annotation]) -> bool:
        """Buffer these points and send everything buffered; False if InfluxDB did not take it."""
        for a in annotations:
            if len(self._buffer) >= MAX_BUFFERED:
                self._buffer.popleft()
                self.dropped += 1
            self._buffer.append(line(a))
        if not self._buffer:
            return True
        if self._failing and time.monotonic() < self._retry_at:
            return False
        lines = list(self._buffer)
        try:
            response = self._http.post(
                "/write",
                params={"db": self._database, "precision": "ms"},
                content="\n".join(lines).encode(),
            )
            ok = response.status_code == 204
            detail = f"status {response.status_code}: {response.text[:200]}"
        except httpx.HTTPError as exc:
            ok, detail = False, f"{type(exc).__name__}: {exc}"[:200]
        if not ok:
            self._failing = True
            self._retry_at = time.monotonic() + RETRY_S
            self._throttle.warning("alert_annotations_failed", detail=detail, buffered=len(lines))
            if response_is_bad_request(detail):
                self._buffer.clear()  # points InfluxDB refuses: never accepted by retrying
                self.dropped += len(lines)
            return False
        if self._failing:
            log.info("event=alert_annotations_resumed")
            self._failing = False
        self._buffer.clear()
        self.written += len(lines)
        return True


def response_is_bad_request(detail: str) -> bool:
    return detail.startswith("status 400")
