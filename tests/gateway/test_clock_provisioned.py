"""Clock sanity against a device's provisioning time, through the running gateway.

The test plays the API on the central broker (credential updates carrying each
device's provisioning time, ``DynsecUpdate.provisioned_ms``, and one in the format
of an older API, without it); the gateway's store says it first ran 60 days ago,
so only the provisioning time can find a reading from three weeks back implausible.
Readings go through an ingest worker into InfluxDB.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from contract.metrics import DeviceKind
from contract.provisioning import DynsecOp, DynsecUpdate, centre_key, encode_key
from contract.storage import SEQ_SLOTS
from gateway.app import Gateway
from gateway.centre_devices import CentreDevices
from gateway.outbox import Outbox
from gramlink.services import InfluxService, MosquittoService
from tests.factories import wait_for
from tests.gateway.conftest import GatewayFactory, settings_for
from tests.gateway.sim import Devices
from tests.gateway.test_clock import DAY_MS, now_ms, oximeter, points
from tests.gateway.test_local_enforcement import MASTER, FakeApi, api  # noqa: F401
from tests.ingest.conftest import ThreadWorker, count, worker_settings

pytestmark = pytest.mark.slow


def test_a_reading_from_before_its_device_was_provisioned_is_stored_flagged(
    local_broker: MosquittoService,
    mosquitto: MosquittoService,
    influx: InfluxService,
    make_gateway: GatewayFactory,
    centre: str,
    api: FakeApi,  # noqa: F811
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "gw"
    data_dir.mkdir()
    # a gateway that first ran 60 days ago (its store says so)
    store = Outbox(settings_for(centre, local_broker, mosquitto, data_dir).db_path, 10**8)
    store.first_run_ms(now_ms() - 60 * DAY_MS)
    store.close()
    key = encode_key(centre_key(MASTER, centre, 1))

    def start() -> Gateway:
        return make_gateway(
            centre, local_broker, mosquitto, centre_key=key, dynsec_timeout_s=3, data_dir=data_dir
        )

    worker = ThreadWorker(worker_settings(mosquitto, influx))
    devices = Devices(local_broker, centre)
    gw = start()
    try:
        old, new = api.dev("oxi-o"), api.dev("oxi-n")
        api.first(old, DeviceKind.PULSE_OXIMETER)  # an older API's update: no provisioning time
        provisioned = now_ms() - 2 * DAY_MS
        api.seq += 1
        update = DynsecUpdate(
            op=DynsecOp.UPSERT,
            device_id=new,
            kind=DeviceKind.PULSE_OXIMETER,
            credential_version=1,
            seq=api.seq,
            provisioned_ms=provisioned,
        )
        api.raw(update.model_dump_json().encode())
        assert api.wait_applied(api.seq).ok
        assert gw.devices is not None and gw.devices.provisioned_ms(new) == provisioned
        assert gw.devices.provisioned_ms(old) is None

        before = now_ms()
        weeks_ago = before - 21 * DAY_MS  # 19 days before it was provisioned
        days_ago = before - 5 * DAY_MS  # 3 days before: within the margin
        devices.publish(new, "telemetry", oximeter(1, weeks_ago))
        devices.publish(new, "telemetry", oximeter(2, days_ago))
        devices.publish(old, "telemetry", oximeter(1, weeks_ago))  # not dated: not judged
        wait_for(lambda: count(influx, "health", centre) >= 3, 30, "all three stored")
        after = now_ms()
        stored = points(influx, "health", centre)
        by_seq = {p["seq"]: p for p in stored[new]}
        flagged = by_seq[1]
        assert (flagged["clock_suspect"], flagged["device_ts"]) == (True, weeks_ago)
        assert before * 1_000_000 <= flagged["time"] <= after * 1_000_000  # its receive time
        assert flagged["spo2_pct"] == 97.0
        assert by_seq[2]["time"] == days_ago * SEQ_SLOTS + 2  # the device's own time
        assert by_seq[2]["clock_suspect"] is None
        (undated,) = stored[old]
        assert undated["time"] == weeks_ago * SEQ_SLOTS + 1 and undated["clock_suspect"] is None
        assert gw.outbox.stats().clock_suspect_total == 1

        # the provisioning time is kept: after a restart it still judges
        gw.stop()
        gw = start()
        devices.publish(new, "telemetry", oximeter(3, weeks_ago))
        wait_for(lambda: count(influx, "health", centre) >= 4, 30, "the fourth stored")
        (again,) = [p for p in points(influx, "health", centre)[new] if p["seq"] == 3]
        assert (again["clock_suspect"], again["device_ts"]) == (True, weeks_ago)
        assert gw.outbox.stats().clock_suspect_total == 2
        gw.report_health()
        wait_for(lambda: count(influx, "gateway", centre, "queue_depth") >= 1, 30, "health")
        (health,) = points(influx, "gateway", centre)[gw.settings.gateway_id]
        assert health["clock_suspect_total"] == 2
    finally:
        devices.close()
        worker.stop()


def test_a_store_written_before_provisioning_times_were_kept_opens_and_learns_them(
    tmp_path: Path,
) -> None:
    path = tmp_path / "gw.db"
    with sqlite3.connect(path) as conn:  # the table as the first gateways wrote it
        conn.execute(
            "CREATE TABLE centre_devices (gateway TEXT NOT NULL, device TEXT NOT NULL,"
            " kind TEXT NOT NULL, PRIMARY KEY (gateway, device))"
        )
        conn.execute("INSERT INTO centre_devices VALUES ('gw-1', 'oxi-1', 'pulse_oximeter')")
    conn.close()
    book = CentreDevices(path, "gw-1")
    assert book.kind_of("oxi-1") == "pulse_oximeter" and book.provisioned_ms("oxi-1") is None
    book.learn("oxi-1", "pulse_oximeter", "m1", 1_750_000_000_000)
    book.learn("oxi-1", "pulse_oximeter")  # an update without it keeps what was learnt
    book.close()
    again = CentreDevices(path, "gw-1")
    assert again.provisioned_ms("oxi-1") == 1_750_000_000_000
    again.forget("oxi-1")
    assert again.provisioned_ms("oxi-1") is None
    again.close()
