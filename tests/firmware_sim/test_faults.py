"""Fault injection as a subscriber sees it: malformed, skew, duplicates, reorder, offline, QoS 0."""

from __future__ import annotations

import itertools
import json
from collections import Counter

import paho.mqtt.client as mqtt

from contract.codec import DecodeError, decode
from contract.topics import Channel, Topic
from firmware_sim.faults import FaultConfig
from gramlink.services import MosquittoService
from tests.factories import close, unique_id, wait_for
from tests.firmware_sim.conftest import MONDAY_10_IST, FleetFactory
from tests.firmware_sim.test_fleet import decoded, watch

HOUR = 3_600_000


def readings(got: object) -> list[mqtt.MQTTMessage]:
    with got.lock:  # type: ignore[attr-defined]
        msgs = list(got.messages)  # type: ignore[attr-defined]
    return [
        m
        for m in msgs
        if Topic.parse(m.topic).channel in (Channel.TELEMETRY, Channel.EVENT) and not m.retain
    ]


def backfill(make_fleet: FleetFactory, centre: str, hours: float, interval_s: int, **faults: float):
    fleet = make_fleet(
        start=False,
        centre_ids=(centre,),
        mode="centre",
        interval_s=interval_s,
        backfill_end_ms=MONDAY_10_IST + int(hours * HOUR),
        faults=FaultConfig(**faults),  # type: ignore[arg-type]
    )
    return fleet, fleet.run()


def test_malformed_rate_is_roughly_the_share_a_subscriber_cannot_decode(
    mosquitto: MosquittoService, make_fleet: FleetFactory
) -> None:
    centre = unique_id("mf")
    client, got = watch(mosquitto, centre)
    try:
        _, stats = backfill(make_fleet, centre, 24, 300, malformed_rate=0.3)
        wait_for(lambda: len(readings(got)) >= stats.readings, 15, "every reading")
        bad = 0
        for m in readings(got):
            try:
                decode(Topic.parse(m.topic).channel, m.payload)
            except DecodeError:
                bad += 1
        share = bad / len(readings(got))
        assert 0.22 <= share <= 0.38, share
        assert stats.malformed == bad
    finally:
        close(client)


def test_clock_skew_shifts_each_device_by_a_constant_within_the_bound(
    mosquitto: MosquittoService, make_fleet: FleetFactory
) -> None:
    centre = unique_id("sk")
    client, got = watch(mosquitto, centre)
    try:
        fleet, stats = backfill(make_fleet, centre, 2, 60, clock_skew_s=3600)
        wait_for(lambda: len(readings(got)) >= stats.readings, 15, "every reading")
        start, end = MONDAY_10_IST, MONDAY_10_IST + 2 * HOUR
        skews = {d: dev.skew_ms for d, dev in fleet.devices.items()}
        assert all(abs(s) <= 3_600_000 for s in skews.values())
        assert len(set(skews.values())) == len(skews), "every device has its own offset"
        outside = 0
        for m in readings(got):
            ts = json.loads(m.payload)["ts"]
            device = Topic.parse(m.topic).device
            assert start <= ts - skews[device] < end  # shifted by exactly its device's skew
            outside += not start <= ts < end
        assert outside, "skewed timestamps fall outside the simulated period"
    finally:
        close(client)


def test_duplicates_and_out_of_order_sends_reach_the_subscriber(
    mosquitto: MosquittoService, make_fleet: FleetFactory
) -> None:
    centre = unique_id("du")
    client, got = watch(mosquitto, centre)
    try:
        _, stats = backfill(make_fleet, centre, 12, 300, duplicate_rate=0.1, reorder_rate=0.1)
        wait_for(lambda: len(readings(got)) >= stats.readings, 15, "every reading")
        seen: dict[str, list[int]] = {}
        for m in readings(got):
            seen.setdefault(Topic.parse(m.topic).device, []).append(json.loads(m.payload)["seq"])
        twice = sum(n > 1 for seqs in seen.values() for n in Counter(seqs).values())
        assert twice >= 5, "some (device, seq) arrive twice"
        out_of_order = sum(
            1 for seqs in seen.values() for a, b in itertools.pairwise(seqs) if b < a
        )
        assert out_of_order >= 5, "sequence order is broken"
        for seqs in seen.values():  # nothing lost: a held-back reading is sent later
            assert set(range(1, max(seqs))) <= set(seqs)
    finally:
        close(client)


def test_offline_periods_take_devices_offline_and_back(
    mosquitto: MosquittoService, make_fleet: FleetFactory
) -> None:
    centre = unique_id("of")
    client, got = watch(mosquitto, centre)
    try:
        make_fleet(
            centre_ids=(centre,),
            devices_per_centre=2,
            interval_s=3600,
            will_delay_s=0,
            faults=FaultConfig(offline_every_s=1.0, offline_s=1.0),
        )

        def flapped() -> bool:
            for device in (f"{centre}-rtr1", f"{centre}-pwr1"):
                states = [s.online for s in decoded(got, Channel.STATE, device)]  # type: ignore[attr-defined]
                text = "".join("1" if s else "0" for s in states)
                if "101" in text:
                    return True
            return False

        wait_for(flapped, 25, "a device going offline (Last Will) and online again")
    finally:
        close(client)


def test_qos0_bursts_arrive_at_qos0_back_to_back(
    mosquitto: MosquittoService, make_fleet: FleetFactory
) -> None:
    centre = unique_id("qb")
    client, got = watch(mosquitto, centre)
    try:
        make_fleet(
            centre_ids=(centre,),
            mode="centre",
            devices_per_centre=2,
            accelerate=600,
            interval_s=60,
            faults=FaultConfig(qos0_burst_every_s=0.5, qos0_burst_size=30),
        )
        wait_for(lambda: sum(m.qos == 0 for m in readings(got)) >= 60, 20, "two bursts at QoS 0")
        burst = [m for m in readings(got) if m.qos == 0]
        first = [json.loads(m.payload) for m in burst[:30]]
        assert [r["ts"] - first[0]["ts"] for r in first] == list(range(30))  # 1 ms apart
        assert all(decode(Channel.TELEMETRY, m.payload) for m in burst)
        assert any(m.qos == 1 for m in readings(got)), "ordinary telemetry stays at QoS 1"
    finally:
        close(client)
