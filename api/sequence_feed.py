"""InfluxDB side of the sequence accounting: read ``sequences`` reports, write totals.

Reads with InfluxQL over ``/query`` (time bounds as bind parameters), pages of
``PAGE`` points (each holds many devices' entries); writes the accounting's
``pipeline`` points with the 1.x HTTP ``/write`` (what ingest's v1 writer uses).
Both map httpx and InfluxDB errors to :class:`api.errors.TelemetryUnavailable`
(retryable): the caller tries again at its next interval. An entry that does not
parse is skipped and counted.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, Final

import httpx

from api.db.models import SequenceGap
from api.errors import TelemetryUnavailable
from api.services.sequence_views import CentreTotals
from api.services.sequences import Report
from contract.metrics import Measurement
from contract.sequences import SEQUENCES_MEASUREMENT, parse_entries
from contract.storage import PIPELINE_MEASUREMENT, SEQ_SLOTS

PAGE: Final = 100  # points of up to 60 KB each
SOURCE: Final = "accounting"


class SequenceFeed:
    def __init__(self, url: str, database: str, user: str, password: str, timeout: float) -> None:
        self._database = database
        self._http = httpx.Client(base_url=url, timeout=timeout, auth=(user, password))
        self.invalid = 0

    def close(self) -> None:
        self._http.close()

    def reports(self, after_ns: int, until_ns: int) -> Iterator[Report]:
        """Reports written in ``(after_ns, until_ns]``, oldest first."""
        offset = 0
        while True:
            query = (
                f'SELECT "entries" FROM "{SEQUENCES_MEASUREMENT}" '
                f"WHERE time > $after AND time <= $until LIMIT {PAGE} OFFSET {offset}"
            )
            rows = self._query(query, {"after": after_ns, "until": until_ns})
            for row in rows:
                text = row.get("entries")
                entries, bad = parse_entries(text if isinstance(text, str) else "")
                self.invalid += bad
                at = int(row["time"])
                for entry in entries:
                    yield Report(entry.centre, entry.device, at, entry.spans)
            if len(rows) < PAGE:
                return
            offset += PAGE

    def stored_seqs(self, gap: SequenceGap) -> list[int]:
        """The seqs of ``gap`` that are stored after all (between its device times)."""
        measurements = ", ".join(f'"{m.value}"' for m in Measurement)
        seqs: list[int] = []
        offset = 0
        while True:
            query = (
                f'SELECT "seq" FROM {measurements} WHERE "centre" = $centre AND '
                '"device" = $device AND time >= $start AND time < $end AND '
                f'"seq" >= $lo AND "seq" <= $hi LIMIT {PAGE} OFFSET {offset}'
            )
            params = {
                "centre": gap.centre,
                "device": gap.device,
                "start": gap.ts_before * SEQ_SLOTS,
                "end": (gap.ts_after + 1) * SEQ_SLOTS,
                "lo": gap.lo,
                "hi": gap.hi,
            }
            rows = self._query(query, params)
            seqs.extend(int(row["seq"]) for row in rows if row.get("seq") is not None)
            if len(rows) < PAGE:
                return seqs
            offset += PAGE

    def write_totals(self, totals: dict[str, CentreTotals], now_ns: int) -> None:
        """One ``pipeline,source=accounting,centre=C`` point per centre."""
        if not totals:
            return
        lines = [
            f"{PIPELINE_MEASUREMENT},source={SOURCE},centre={centre} "
            f"devices={t.devices}i,readings_stored={t.stored}i,open_gaps={t.open_gaps}i,"
            f"open_readings={t.open_readings}i,gaps_closed_late={t.late_gaps}i,"
            f"readings_late={t.late_readings}i,gaps_lost={t.lost_gaps}i,"
            f"readings_lost={t.lost_readings}i,readings_recovered={t.recovered}i,"
            f"seq_resets={t.resets}i {now_ns}"
            for centre, t in sorted(totals.items())
        ]
        try:
            response = self._http.post(
                "/write",
                params={"db": self._database, "precision": "ns"},
                content="\n".join(lines).encode(),
            )
        except httpx.HTTPError as exc:
            raise TelemetryUnavailable(f"InfluxDB did not answer: {type(exc).__name__}") from exc
        if response.status_code != 204:
            raise TelemetryUnavailable(f"InfluxDB answered {response.status_code} to a write")

    def _query(self, query: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        try:
            response = self._http.post(
                "/query",
                params={"db": self._database, "epoch": "ns"},
                data={"q": query, "params": json.dumps(params)},
            )
            body = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise TelemetryUnavailable(f"InfluxDB did not answer: {type(exc).__name__}") from exc
        if response.status_code >= 400 or "error" in body:
            raise TelemetryUnavailable(f"InfluxDB answered {response.status_code}")
        out: list[dict[str, Any]] = []
        for result in body.get("results", []):
            if "error" in result:
                raise TelemetryUnavailable(f"InfluxDB query failed: {result['error'][:200]}")
            for series in result.get("series", []):
                columns = series["columns"]
                out.extend(dict(zip(columns, row, strict=True)) for row in series["values"])
        return out
