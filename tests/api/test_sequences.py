"""Every loss becomes visible: real ingest workers report what they stored, the API accounts.

A real central broker, InfluxDB, one or two ingest workers (in threads) and the
API with its accounting loop on short intervals; readings are published as a
device or a gateway would, with holes, late fills and replays.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from api.schemas import Role
from contract.topics import Channel, topic
from gramlink.services import InfluxService, MosquittoService
from ingest.settings import IngestSettings
from tests.api.conftest import Api, ApiFactory
from tests.factories import unique_id, wait_for
from tests.ingest.conftest import Publisher, ThreadWorker, now_ms, power_reading, worker_settings

FAST = {"sequence_interval_s": 0.2, "sequence_lag_s": 0.5}


@pytest.fixture
def workers() -> Iterator[Callable[[IngestSettings], ThreadWorker]]:
    started: list[ThreadWorker] = []

    def make(settings: IngestSettings) -> ThreadWorker:
        worker = ThreadWorker(settings)
        started.append(worker)
        return worker

    yield make
    for worker in started:
        worker.stop()


@pytest.fixture
def publisher(mosquitto: MosquittoService) -> Iterator[Publisher]:
    pub = Publisher(mosquitto)
    yield pub
    pub.close()


def send(pub: Publisher, centre: str, device: str, seqs: range, ts0: int) -> None:
    for seq in seqs:
        pub.publish(topic(centre, device, Channel.TELEMETRY), power_reading(seq, ts0 + seq))
    pub.flush()


def device_sequence(api: Api, device: str) -> dict[str, Any]:
    answer = api.client.get(f"/v1/devices/{device}/sequence", headers=api.headers(Role.VIEWER))
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def centre_sequence(api: Api, centre: str) -> dict[str, Any]:
    answer = api.client.get(f"/v1/centres/{centre}/sequence", headers=api.headers(Role.VIEWER))
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def metric(api: Api, name: str, centre: str) -> float | None:
    for line in api.client.get("/metrics").text.splitlines():
        if line.startswith(f'{name}{{centre="{centre}"}} '):
            return float(line.split()[-1])
    return None


def reporting_worker(
    mosquitto: MosquittoService, influx: InfluxService, **extra: object
) -> IngestSettings:
    return worker_settings(mosquitto, influx, sequence_interval_s=0.2, **extra)


def test_a_hole_is_shown_open_then_closed_late_when_filled(
    api_factory: ApiFactory,
    mosquitto: MosquittoService,
    influx: InfluxService,
    workers: Callable[[IngestSettings], ThreadWorker],
    publisher: Publisher,
) -> None:
    api = api_factory(**FAST, sequence_grace_s=2.0)
    centre, device = api.centre(), unique_id("pw")
    assert api.post_device(centre, device, kind="power").status_code == 201
    workers(reporting_worker(mosquitto, influx))
    ts0 = now_ms() - 600_000
    send(publisher, centre, device, range(1, 21), ts0)
    send(publisher, centre, device, range(26, 41), ts0)

    wait_for(lambda: device_sequence(api, device)["open_gaps"] == 1, 30, "the gap shown open")
    seen = device_sequence(api, device)
    assert (seen["highest_seq"], seen["readings_stored"], seen["open_readings"]) == (40, 35, 5)
    assert [(g["first_seq"], g["last_seq"], g["status"]) for g in seen["gaps"]] == [
        (21, 25, "open")
    ]
    wait_for(lambda: metric(api, "gramlink_sequence_open_readings", centre) == 5, 10, "gauge")

    send(publisher, centre, device, range(21, 26), ts0)  # the hole arrives late
    wait_for(lambda: device_sequence(api, device)["readings_late"] == 5, 30, "closed late")
    seen = device_sequence(api, device)
    assert (seen["open_gaps"], seen["gaps_closed_late"], seen["readings_stored"]) == (0, 1, 40)
    assert [(g["first_seq"], g["last_seq"], g["status"]) for g in seen["gaps"]] == [
        (21, 25, "closed")
    ]
    totals = centre_sequence(api, centre)["totals"]
    assert (totals["readings_late"], totals["readings_lost"], totals["open_gaps"]) == (5, 0, 0)
    wait_for(
        lambda: metric(api, "gramlink_sequence_readings_late_total", centre) == 5, 10, "counter"
    )
    assert metric(api, "gramlink_sequence_open_readings", centre) == 0

    def pipeline_point() -> dict[str, Any] | None:
        body = influx.query(
            "SELECT last(readings_late) AS late, last(open_gaps) AS open FROM pipeline "
            f"WHERE source='accounting' AND centre='{centre}'",
            database=influx.database,
        )
        series = body["results"][0].get("series")
        if not series:
            return None
        return dict(zip(series[0]["columns"], series[0]["values"][0], strict=True))

    wait_for(lambda: (pipeline_point() or {}).get("late") == 5, 10, "the pipeline point")
    assert (pipeline_point() or {}).get("open") == 0


def test_a_hole_older_than_the_horizon_is_counted_lost(
    api_factory: ApiFactory,
    mosquitto: MosquittoService,
    influx: InfluxService,
    workers: Callable[[IngestSettings], ThreadWorker],
    publisher: Publisher,
) -> None:
    api = api_factory(**FAST, sequence_grace_s=1.0, sequence_horizon_s=4.0)
    centre, device = api.centre(), unique_id("pw")
    assert api.post_device(centre, device, kind="power").status_code == 201
    workers(reporting_worker(mosquitto, influx))
    ts0 = now_ms() - 600_000
    send(publisher, centre, device, range(1, 11), ts0)
    send(publisher, centre, device, range(18, 31), ts0)  # 11-17 never come

    wait_for(lambda: device_sequence(api, device)["gaps_lost"] == 1, 30, "the gap given up")
    seen = device_sequence(api, device)
    assert (seen["readings_lost"], seen["open_gaps"], seen["readings_stored"]) == (7, 0, 23)
    assert [(g["first_seq"], g["last_seq"], g["status"]) for g in seen["gaps"]] == [
        (11, 17, "lost")
    ]
    assert centre_sequence(api, centre)["totals"]["readings_lost"] == 7
    wait_for(
        lambda: metric(api, "gramlink_sequence_readings_lost_total", centre) == 7, 10, "counter"
    )


def test_two_workers_sharing_a_subscription_account_exactly(
    api_factory: ApiFactory,
    mosquitto: MosquittoService,
    influx: InfluxService,
    workers: Callable[[IngestSettings], ThreadWorker],
    publisher: Publisher,
) -> None:
    api = api_factory(**FAST)  # default grace: reports of two workers may cross
    centre = api.centre()
    devices = [unique_id("pw") for _ in range(5)]
    group = unique_id("g")
    first = workers(reporting_worker(mosquitto, influx, share_group=group, batch_size=50))
    second = workers(reporting_worker(mosquitto, influx, share_group=group, batch_size=50))
    ts0 = now_ms() - 600_000
    for seq in range(1, 401):
        for device in devices:
            publisher.publish(
                topic(centre, device, Channel.TELEMETRY), power_reading(seq, ts0 + seq)
            )
    publisher.flush()

    def stored() -> int:
        return int(centre_sequence(api, centre)["totals"]["readings_stored"])

    wait_for(lambda: stored() == 2000, 60, "all readings accounted")
    assert first.worker.sequences.reported > 0 and second.worker.sequences.reported > 0
    body = centre_sequence(api, centre)
    totals = body["totals"]
    assert body["devices_reported"] == 5
    missing = (totals["open_gaps"], totals["settling_gaps"], totals["readings_late"])
    assert missing == (0, 0, 0)
    assert totals["readings_lost"] == 0
    assert {d["device_id"]: d["highest_seq"] for d in body["devices"]} == dict.fromkeys(
        devices, 400
    )


def test_a_replayed_batch_is_not_counted_twice(
    api_factory: ApiFactory,
    mosquitto: MosquittoService,
    influx: InfluxService,
    workers: Callable[[IngestSettings], ThreadWorker],
    publisher: Publisher,
) -> None:
    api = api_factory(**FAST, sequence_grace_s=5.0)
    centre, gateway = api.centre(), unique_id("gw")
    devices = [unique_id("pw") for _ in range(3)]
    worker = workers(reporting_worker(mosquitto, influx))
    ts0 = now_ms() - 600_000
    publisher.envelopes(centre, gateway, devices, range(1, 101), ts0)
    publisher.flush()
    wait_for(lambda: centre_sequence(api, centre)["totals"]["readings_stored"] == 300, 30, "stored")
    written = worker.worker.metrics.points._value.get()
    publisher.envelopes(centre, gateway, devices, range(1, 101), ts0)  # the same batches again
    publisher.flush()
    ledger = worker.worker.sequences
    wait_for(
        lambda: (
            worker.worker.metrics.points._value.get() >= written + 300
            and ledger.pending_devices() == 0
        ),
        30,
        "the replay stored and reported",
    )
    reported_by = time.time_ns()
    accounting = api.client.app.state.accounting  # type: ignore[attr-defined]
    wait_for(lambda: accounting.until_ns > reported_by, 30, "the replay's reports merged")
    totals = centre_sequence(api, centre)["totals"]
    assert (totals["readings_stored"], totals["readings_late"], totals["open_gaps"]) == (300, 0, 0)


def test_readings_stored_by_a_worker_that_never_reported_are_found_not_lost(
    api_factory: ApiFactory,
    mosquitto: MosquittoService,
    influx: InfluxService,
    workers: Callable[[IngestSettings], ThreadWorker],
    publisher: Publisher,
) -> None:
    """One of two workers stores its share but never reports it (as if killed between its
    write and its report): the API finds those readings in storage; nothing counts as lost."""
    api = api_factory(
        **FAST, sequence_grace_s=2.0, sequence_check_after_s=5.0, sequence_horizon_s=60.0
    )
    centre, device = api.centre(), unique_id("pw")
    group = unique_id("g")
    reporter = workers(reporting_worker(mosquitto, influx, share_group=group, batch_size=10))
    silent = workers(
        worker_settings(mosquitto, influx, share_group=group, batch_size=10, sequence_interval_s=0)
    )
    send(publisher, centre, device, range(1, 301), now_ms() - 600_000)
    wait_for(lambda: silent.worker.metrics.points._value.get() > 0, 30, "the silent worker stores")

    def summary() -> dict[str, Any]:
        found = [d for d in centre_sequence(api, centre)["devices"] if d["device_id"] == device]
        return found[0] if found else {}

    reporter_points = reporter.worker.metrics.points._value.get
    silent_points = silent.worker.metrics.points._value.get
    wait_for(lambda: reporter_points() + silent_points() == 300, 30, "all stored")
    wait_for(lambda: reporter.worker.sequences.pending_devices() == 0, 10, "all reported")
    reported_by = time.time_ns()
    accounting = api.client.app.state.accounting  # type: ignore[attr-defined]
    wait_for(lambda: accounting.until_ns > reported_by, 30, "the reports merged")

    def settled() -> bool:
        seen = summary()
        return seen["open_gaps"] + seen["settling_gaps"] == 0 and (
            seen["readings_stored"] == seen["highest_seq"]
        )

    wait_for(settled, 30, "the gaps looked up in storage")
    seen = summary()
    # Readings after the highest reported seq are invisible until a later one arrives.
    unseen = 300 - seen["highest_seq"]
    assert seen["readings_recovered"] == silent_points() - unseen
    assert seen["readings_recovered"] > 0
    assert (seen["readings_lost"], seen["readings_late"]) == (0, 0)


def test_a_device_that_restarts_its_numbering_starts_a_new_epoch(
    api_factory: ApiFactory,
    mosquitto: MosquittoService,
    influx: InfluxService,
    workers: Callable[[IngestSettings], ThreadWorker],
    publisher: Publisher,
) -> None:
    api = api_factory(**FAST, sequence_grace_s=1.0)
    centre, device = api.centre(), unique_id("pw")
    assert api.post_device(centre, device, kind="power").status_code == 201
    workers(reporting_worker(mosquitto, influx))
    ts0 = now_ms() - 3_600_000
    send(publisher, centre, device, range(1, 51), ts0)
    wait_for(lambda: device_sequence(api, device)["highest_seq"] == 50, 30, "first numbering")
    send(publisher, centre, device, range(1, 21), ts0 + 1_800_000)  # rebooted: from 1 again
    wait_for(lambda: device_sequence(api, device)["resets"] == 1, 30, "the restart seen")
    wait_for(lambda: device_sequence(api, device)["highest_seq"] == 20, 30, "second numbering")
    seen = device_sequence(api, device)
    assert (seen["epoch"], seen["readings_stored"], seen["lowest_seq"]) == (2, 70, 1)
    assert (seen["open_gaps"], seen["readings_late"], seen["gaps"]) == (0, 0, [])
