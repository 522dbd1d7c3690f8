"""A day of simulated data, through the real path, in an InfluxDB of its own.

Three centres (the demo's Samba hub, a Samba spoke and a Kathua spoke) with seven
simulated devices each, the last 48 hours backfilled at a 10-minute interval (two
days, so a day with opening hours, and so health measurements, is always in it):
simulator → one centre broker → a gateway per centre → a central broker →
an ingest worker → InfluxDB. Then the API's own writer adds the ``centres`` and
``solar_expected`` points, and a few ``alerts`` points in the alert engine's
layout are written directly (the engine is not part of this path).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from api.alerts.annotations import line as alert_line
from api.alerts.lifecycle import Annotation
from api.centre_facts import CentreFact, InfluxLines, centre_line, solar_lines
from api.clear_sky import DAY_S, local_day_start_s
from firmware_sim.fleet import Fleet, FleetConfig
from gateway.app import Gateway
from gramlink.demo_places import place_of
from gramlink.services import InfluxService, MosquittoService
from tests.factories import admin_client, close, wait_for
from tests.gateway.conftest import settings_for
from tests.gateway.sim import Devices, router_reading
from tests.ingest.conftest import ThreadWorker, worker_settings

CENTRES = ("hub", "spoke1", "spoke5")
DAY_MS = 86_400_000


@dataclass(frozen=True)
class Day:
    influx: InfluxService
    from_ms: int
    to_ms: int
    centres: tuple[str, ...]


def count(influx: InfluxService, query: str) -> int:
    answer = httpx.get(
        f"{influx.url}/query",
        params={"db": influx.database, "q": query},
        auth=(influx.admin_user, influx.admin_password),
        timeout=10,
    ).json()
    series = answer["results"][0].get("series", [])
    return sum(int(row[1]) for s in series for row in s["values"])


def facts() -> list[CentreFact]:
    result = []
    for centre in CENTRES:
        place = place_of(centre)
        result.append(
            CentreFact(
                id=centre,
                name=place.name,
                village=place.village,
                district=place.district,
                state=place.state,
                hub="hub",
                latitude=place.latitude,
                longitude=place.longitude,
                online=centre != "spoke5",
                utc_offset_h=place.utc_offset_h,
                pv_rated_w=1600.0,
            )
        )
    return result


ALERTS = (
    # rule, severity, centre, device, state, id, value, clinical
    ("battery-low", "warning", "hub", "hub-pwr1", "firing", "a1", 18.0, False),
    ("spo2-low", "critical", "spoke1", "spoke1-ox1", "firing", "a2", 88.0, True),
    ("spo2-low", "critical", "spoke1", "spoke1-ox1", "resolved", "a2", 96.0, True),
    ("device-silent", "warning", "spoke5", "spoke5-rtr1", "firing", "a3", None, False),
    ("bp-high", "critical", "hub", "hub-bp1", "firing", "a4", 182.0, True),
)


@pytest.fixture(scope="session")
def dashboard_day(
    influx_factory: Callable[[], InfluxService],
    broker_factory: Callable[..., MosquittoService],
    tmp_path_factory: pytest.TempPathFactory,
) -> Day:
    influx = influx_factory()
    central = broker_factory()  # its own: no other test's centres reach this ingest worker
    local = broker_factory(centre=True)
    now_ms = time.time_ns() // 1_000_000
    start_ms = now_ms - 2 * DAY_MS
    ingest = ThreadWorker(worker_settings(central, influx, pipeline_interval_s=1))
    gateways: list[Gateway] = []
    data: Path = tmp_path_factory.mktemp("dashboard-day")
    try:
        for centre in CENTRES:
            gw = Gateway(settings_for(centre, local, central, data / centre, health_interval_s=1))
            gw.start()
            gateways.append(gw)
        # Each gateway relays before the day is pushed: a probe reading reaches InfluxDB.
        devices = {c: Devices(local, c) for c in CENTRES}
        for centre, publisher in devices.items():
            seq = 0

            def arrived(centre: str = centre) -> bool:
                q = f"SELECT count(seq) FROM router WHERE centre = '{centre}' AND device = 'probe'"
                return bool(count(influx, q))

            while not arrived():
                publisher.publish("probe", "telemetry", router_reading(seq)).wait_for_publish(5)
                seq += 1
                try:
                    wait_for(arrived, 1.0, "probe")
                except AssertionError:
                    if seq > 20:
                        raise
            publisher.close()
        # A device publishing garbage straight to the central broker: ingest quarantines it.
        garbage = admin_client(central)
        garbage.publish("gl/v1/hub/broken-1/telemetry", b"{not json", qos=1).wait_for_publish(5)
        close(garbage)
        quarantined = "SELECT count(detail) FROM quarantine WHERE centre = 'hub'"
        wait_for(lambda: count(influx, quarantined) > 0, 20, "a quarantined reading")
        fleet = Fleet(
            FleetConfig(
                port=local.port,
                username=local.admin_user,
                password=local.admin_password,
                centre_ids=CENTRES,
                devices_per_centre=7,
                start_ms=start_ms,
                backfill_end_ms=now_ms,
                interval_s=600,
                seed=14,
            )
        )
        fleet.start()
        # The gateways' own health readings (``run_until`` sends them on a timer): while
        # the day streams in, and after.
        while not fleet.done.wait(0.5):
            for gw in gateways:
                gw.report_health()
        fleet.stop(drain_s=60)
        published = fleet.stats().readings
        stored = "SELECT count(seq) FROM router, power, health WHERE time > now() - 3d"
        wait_for(lambda: count(influx, stored) >= published * 0.99, 60, "the day stored")
        wait_for(lambda: all(g.outbox.stats().depth == 0 for g in gateways), 30, "queues empty")
        health = "SELECT count(queue_depth) FROM gateway"
        for reported in range(1, 4):
            for gw in gateways:
                gw.report_health()
            n = reported * len(CENTRES)
            wait_for(lambda n=n: count(influx, health) >= n, 20, "gateway health")  # type: ignore[misc]
        # The worker's pipeline points (one a second here) over more than two of the
        # Pipeline dashboard's 5 s intervals, with writes (gateway health) meanwhile.
        pipeline = "SELECT count(readings) FROM pipeline"
        while count(influx, pipeline) < 14:
            for gw in gateways:
                gw.report_health()
            seen = count(influx, pipeline)
            wait_for(lambda seen=seen: count(influx, pipeline) > seen, 10, "pipeline")  # type: ignore[misc]
    finally:
        for gw in gateways:
            gw.stop()
        ingest.stop()
    writer = InfluxLines(influx.url, influx.database, influx.admin_user, influx.admin_password, 10)
    lines = [centre_line(f, now_ms * 1_000_000) for f in facts()]
    for fact in facts():
        today = local_day_start_s(now_ms / 1000, fact.utc_offset_h)
        for back in (2, 1, 0):
            lines.extend(solar_lines(fact, today - back * DAY_S))
    for i, (rule, severity, centre, device, state, alert_id, value, clinical) in enumerate(ALERTS):
        at_ms = now_ms - (len(ALERTS) - i) * 3_600_000  # in order
        annotation = Annotation(
            at_ms, alert_id, rule, severity, centre, device, state, value, clinical, 1
        )
        lines.append(alert_line(annotation).rsplit(" ", 1)[0] + f" {at_ms * 1_000_000}")
    writer.write(lines)
    writer.close()
    return Day(influx, start_ms - 3_600_000, now_ms + 300_000, CENTRES)
