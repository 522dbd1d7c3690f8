"""``gramlink influx init``: database/buckets, retention and hourly roll-ups, idempotently.

InfluxDB 1.x (``writer v1``), over InfluxQL ``/query``:
- database ``influx_database``;
- retention policy ``raw`` (90 days, the DEFAULT: ingest writes there unless
  ``influx_retention_policy`` says otherwise) and ``rollup_5y`` (1825 days). A
  new database is created with ``raw`` as its default in one statement: made
  the plain way it would first get an ``autogen`` default, and a write arriving
  before ``raw`` became the default (ingest retrying while an operator
  recreates a dropped database) would land where no query or roll-up looks;
- per reading measurement (router, power, health, gateway) a continuous query
  ``cq_<m>_1h``: hourly ``mean``, ``min``, ``max`` of every numeric field into
  ``rollup_5y.<m>``, grouped by all tags.
A policy that exists with another duration is altered; an existing continuous
query is left as it is (drop it to have it recreated).

InfluxDB 2.x (``writer v2``), through influxdb-client: buckets ``<bucket>``
(90 d) and ``<bucket>_rollup`` (1825 d) and one task per measurement running
the same hourly roll-up in Flux. NOT tested against a real 2.x server (none on
these machines).
"""

from __future__ import annotations

import logging
from typing import Final

import httpx

from contract.metrics import Measurement
from ingest.errors import ConfigError, WriteFatal, WriteUnavailable
from ingest.settings import IngestSettings
from runtime.logs import kv

log = logging.getLogger("ingest.retention")
RAW_RP: Final = "raw"
ROLLUP_RP: Final = "rollup_5y"
RAW_DAYS: Final = 90
ROLLUP_DAYS: Final = 1825


def _q(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


class InfluxQL:
    """Minimal 1.x ``/query`` client (errors mapped to ``ingest.errors``)."""

    def __init__(self, settings: IngestSettings) -> None:
        auth = None
        if settings.influx_username:
            password = settings.influx_password
            auth = (settings.influx_username, password.get_secret_value() if password else "")
        self._client = httpx.Client(base_url=settings.influx_url, auth=auth, timeout=30)

    def run(self, statement: str, db: str | None = None) -> list[dict]:  # type: ignore[type-arg]
        params = {"q": statement}
        if db:
            params["db"] = db
        try:
            response = self._client.post("/query", params=params)
        except httpx.HTTPError as exc:
            raise WriteUnavailable(f"InfluxDB not reachable: {exc}") from exc
        if response.status_code in (401, 403):
            raise WriteFatal("credentials refused", response.status_code)
        body = response.json() if response.content else {}
        if response.status_code >= 400 or "error" in body:
            raise ConfigError(f"InfluxQL failed ({response.status_code}): {body}"[:400])
        results: list[dict] = body.get("results", [])  # type: ignore[type-arg]
        for result in results:
            if "error" in result:
                raise ConfigError(f"InfluxQL failed: {result['error']}"[:400])
        return results

    def close(self) -> None:
        self._client.close()


def _databases(ql: InfluxQL) -> set[str]:
    return {
        values[0]
        for result in ql.run("SHOW DATABASES")
        for series in result.get("series", [])
        for values in series.get("values", [])
    }


def init_v1(
    settings: IngestSettings, raw_days: int = RAW_DAYS, rollup_days: int = ROLLUP_DAYS
) -> list[str]:
    """Create or fix the 1.x layout; returns what it changed (empty when all was in place)."""
    db = settings.influx_database
    ql = InfluxQL(settings)
    changed: list[str] = []
    try:
        if db not in _databases(ql):
            ql.run(
                f"CREATE DATABASE {_q(db)} WITH DURATION {raw_days}d REPLICATION 1 "
                f"NAME {_q(RAW_RP)}"
            )
            changed.append(f"created database {db}, default retention policy {RAW_RP}")
        existing: dict[str, dict] = {}  # type: ignore[type-arg]
        for result in ql.run(f"SHOW RETENTION POLICIES ON {_q(db)}"):
            for series in result.get("series", []):
                cols = series["columns"]
                for values in series["values"]:
                    row = dict(zip(cols, values, strict=True))
                    existing[row["name"]] = row
        for name, days, default in ((RAW_RP, raw_days, True), (ROLLUP_RP, rollup_days, False)):
            want = f"{days * 24}h0m0s"
            suffix = " DEFAULT" if default else ""
            found = existing.get(name)
            if found is None:
                ql.run(
                    f"CREATE RETENTION POLICY {_q(name)} ON {_q(db)} "
                    f"DURATION {days}d REPLICATION 1{suffix}"
                )
                changed.append(f"created retention policy {name} ({days} d)")
            elif found["duration"] != want or (default and not found["default"]):
                ql.run(f"ALTER RETENTION POLICY {_q(name)} ON {_q(db)} DURATION {days}d{suffix}")
                changed.append(f"altered retention policy {name} ({days} d)")
        cqs: set[str] = set()
        for result in ql.run("SHOW CONTINUOUS QUERIES"):
            for series in result.get("series", []):
                if series.get("name") == db:
                    cqs.update(values[0] for values in series.get("values", []))
        for measurement in Measurement:
            name = f"cq_{measurement.value}_1h"
            if name in cqs:
                continue
            m = measurement.value
            ql.run(
                f"CREATE CONTINUOUS QUERY {_q(name)} ON {_q(db)} BEGIN "
                f"SELECT mean(*), min(*), max(*) INTO {_q(db)}.{_q(ROLLUP_RP)}.{_q(m)} "
                f"FROM {_q(db)}.{_q(RAW_RP)}.{_q(m)} GROUP BY time(1h), * END"
            )
            changed.append(f"created continuous query {name}")
    finally:
        ql.close()
    for line in changed:
        log.info(kv("influx_init", change=line, database=db))
    return changed


def init_v2(
    settings: IngestSettings, raw_days: int = RAW_DAYS, rollup_days: int = ROLLUP_DAYS
) -> list[str]:
    """Buckets and roll-up tasks on InfluxDB 2.x (untested here: no 2.x server available)."""
    from influxdb_client import BucketRetentionRules, InfluxDBClient, TaskCreateRequest

    assert settings.influx_token is not None and settings.influx_bucket and settings.influx_org
    changed: list[str] = []
    raw, rollup = settings.influx_bucket, f"{settings.influx_bucket}_rollup"
    with InfluxDBClient(
        url=settings.influx_url,
        token=settings.influx_token.get_secret_value(),
        org=settings.influx_org,
    ) as client:
        org = client.organizations_api().find_organizations(org=settings.influx_org)[0]
        buckets = client.buckets_api()
        for name, days in ((raw, raw_days), (rollup, rollup_days)):
            rules = BucketRetentionRules(type="expire", every_seconds=days * 86400)
            found = buckets.find_bucket_by_name(name)
            if found is None:
                buckets.create_bucket(bucket_name=name, retention_rules=rules, org_id=org.id)
                changed.append(f"created bucket {name} ({days} d)")
            elif (
                not found.retention_rules or found.retention_rules[0].every_seconds != days * 86400
            ):
                found.retention_rules = [rules]
                buckets.update_bucket(bucket=found)
                changed.append(f"updated bucket {name} ({days} d)")
        tasks = client.tasks_api()
        have = {task.name for task in tasks.find_tasks(org_id=org.id)}
        for measurement in Measurement:
            name = f"rollup_{measurement.value}_1h"
            if name in have:
                continue
            flux = _flux_task(name, raw, rollup, measurement.value, settings.influx_org)
            tasks.create_task(
                task_create_request=TaskCreateRequest(
                    flux=flux, org_id=org.id, status="active", description=name
                )
            )
            changed.append(f"created task {name}")
    return changed


def _flux_task(name: str, raw: str, rollup: str, measurement: str, org: str) -> str:
    parts = []
    for fn in ("mean", "min", "max"):
        parts.append(
            f"data |> aggregateWindow(every: 1h, fn: {fn}, createEmpty: false)"
            f' |> map(fn: (r) => ({{r with _field: "{fn}_" + r._field}}))'
            f' |> to(bucket: "{rollup}", org: "{org}")'
        )
    body = "\n".join(parts)
    return (
        f'option task = {{name: "{name}", every: 1h}}\n'
        f'data = from(bucket: "{raw}") |> range(start: -task.every)'
        f' |> filter(fn: (r) => r._measurement == "{measurement}")'
        ' |> filter(fn: (r) => types.isType(v: r._value, type: "float")'
        ' or types.isType(v: r._value, type: "int"))\n'
        f"{body}\n"
    ).replace("option task", 'import "types"\noption task', 1)


def init(settings: IngestSettings) -> list[str]:
    return init_v2(settings) if settings.writer == "v2" else init_v1(settings)
