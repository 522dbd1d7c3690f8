"""A reading's stored series depends only on the reading: a batch redelivered after an
ingest restart (the births not seen yet) lands on the same points, not a second series."""

from __future__ import annotations

import pytest

from contract.codec import encode_batch_parts
from contract.topics import Channel, topic
from tests.factories import admin_client, close, unique_id, wait_for
from tests.ingest.conftest import (
    Publisher,
    count,
    now_ms,
    power_reading,
    publish_births,
    rows,
    worker_settings,
)

pytestmark = pytest.mark.slow


def test_a_redelivered_batch_after_an_ingest_restart_stores_no_second_point(
    mosquitto, influx, start_worker
) -> None:
    centre = unique_id("c")
    publish_births(mosquitto, centre, {"pw-1": "born-model"})  # what the old cache knew
    ts0 = now_ms() - 60_000
    records = [
        ("telemetry", "pw-1", power_reading(seq, ts0 + seq), ts0, "victron-mppt")
        for seq in range(200)
    ]
    envelope = encode_batch_parts("gw-1", 7, records)
    settings = worker_settings(mosquitto, influx)
    first = start_worker(settings)
    wait_for(lambda: first.worker.models.get(centre, "pw-1") != "unknown", 10, "birth seen")
    pub = Publisher(mosquitto)
    pub.publish(topic(centre, "gw-1", Channel.GATEWAY_BATCH), envelope)
    pub.flush()
    wait_for(lambda: count(influx, "power", centre) >= 200, 30, "first delivery stored")
    assert first.stop() == 0

    # The births are gone (a new worker's cache is empty); the gateway sends the batch again.
    admin = admin_client(mosquitto)
    admin.publish(topic(centre, "pw-1", Channel.STATE), b"", qos=1, retain=True).wait_for_publish(5)
    close(admin)
    second = start_worker(settings)
    pub.publish(topic(centre, "gw-1", Channel.GATEWAY_BATCH), envelope)
    pub.publish(topic(centre, "pw-9", Channel.TELEMETRY), power_reading(1, ts0))  # marker
    pub.flush()
    wait_for(lambda: count(influx, "power", centre) >= 201, 30, "redelivery and marker stored")
    assert second.worker.metrics.readings._value.get() >= 201
    assert count(influx, "power", centre) == 201  # no second series for the redelivery
    models = {
        r["model"]
        for r in rows(influx, f"SELECT * FROM power WHERE centre='{centre}' AND device='pw-1'")
    }
    assert models == {"victron-mppt"}  # the record's model, not the birth's
    (direct,) = rows(influx, f"SELECT * FROM power WHERE centre='{centre}' AND device='pw-9'")
    assert direct["model"] == "unknown"  # a direct reading carries no model
    pub.close()
