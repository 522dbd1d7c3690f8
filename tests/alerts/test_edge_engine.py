"""The engine and the alerts centres' gateways raise: one alert either way round.

The gateway's ``EdgeAlert`` and the reading it came from reach the central
broker in either order (both in the priority lane); the engine makes one alert
of them, stamped ``edge_raised_ms``, notified once.
"""

from __future__ import annotations

import pytest

from alerting.ids import alert_id
from contract.codec import encode_batch_parts
from contract.edge import EdgeAlert, alert_upstream_topic
from contract.metrics import DeviceKind
from contract.topics import Channel, topic
from tests.alerts.conftest import EngineFactory, Publisher, Registry, now_ms
from tests.factories import wait_for

pytestmark = pytest.mark.timeout(60)


def edge_alert(centre: str, device: str, rule: str, ts: int, seq: int, raised: int) -> bytes:
    subject = f"{centre}/{device}/-"
    alert = EdgeAlert(
        alert_id=alert_id(rule, subject, ts, seq),
        state="firing",
        rule_id=rule,
        rule_name="SpO2 below 90%",
        severity="critical",
        clinical=True,
        centre=centre,
        device=device,
        kind=DeviceKind.PULSE_OXIMETER,
        subject=subject,
        ts=ts,
        device_ts=ts,
        seq=seq,
        started_ms=ts,
        raised_ms=raised,
        value=85.0,
        metric="spo2_pct",
    )
    return alert.model_dump_json(exclude_none=True).encode()


def setup(registry: Registry) -> tuple[str, str, str, str]:
    centre = registry.centre()
    gateway = registry.device(centre, "gateway", "gw")
    oxi = registry.device(centre, "pulse_oximeter", "oxi")
    rule = registry.rule("spo2-low", centre)
    registry.channel()
    return centre, gateway, oxi, rule


def test_the_gateways_alert_first_opens_the_alert_and_its_reading_changes_nothing(
    registry: Registry, publisher: Publisher, start_engine: EngineFactory
) -> None:
    centre, gateway, oxi, rule = setup(registry)
    running = start_engine()
    ts = now_ms()
    record = publisher.record(oxi, "pulse_oximeter", ts, ts, spo2_pct=85.0)
    seq = publisher.seqs[oxi]
    raised = ts + 40
    publisher.send(
        alert_upstream_topic(centre, gateway), edge_alert(centre, oxi, rule, ts, seq, raised)
    )
    wait_for(lambda: registry.alert(centre, rule) is not None, 5, "the alert from the gateway")
    evaluated = running.service.engine.evaluated
    publisher.batch(centre, gateway, [record])  # the reading, after the uplink came back
    wait_for(lambda: running.service.engine.evaluated > evaluated, 5, "the reading evaluated")

    (alert,) = registry.alerts(centre)
    assert alert.id == alert_id(rule, f"{centre}/{oxi}/-", ts, seq)
    assert alert.edge_raised_ms == raised and alert.state == "firing" and alert.count == 1
    assert alert.clinical and alert.value == 85.0
    assert registry.events(centre) == [(rule, "firing")]
    # the next reading of the episode folds into it, still notified once
    publisher.batch(
        centre, gateway, [publisher.record(oxi, "pulse_oximeter", ts + 1000, ts, spo2_pct=84.0)]
    )
    wait_for(lambda: (registry.alert(centre, rule) or alert).count == 2, 5, "the repeat")
    assert registry.events(centre) == [(rule, "firing")]


def test_the_reading_first_opens_the_alert_and_the_gateways_alert_stamps_it(
    registry: Registry, publisher: Publisher, start_engine: EngineFactory
) -> None:
    centre, gateway, oxi, rule = setup(registry)
    start_engine()
    ts = now_ms()
    record = publisher.record(oxi, "pulse_oximeter", ts, ts, spo2_pct=85.0)
    seq = publisher.seqs[oxi]
    publisher.batch(centre, gateway, [record])
    wait_for(lambda: registry.alert(centre, rule) is not None, 5, "the alert from the reading")
    publisher.send(
        alert_upstream_topic(centre, gateway), edge_alert(centre, oxi, rule, ts, seq, ts + 7)
    )

    def stamped() -> bool:
        found = registry.alert(centre, rule)
        return found is not None and found.edge_raised_ms is not None

    wait_for(stamped, 5, "the alert stamped")
    (alert,) = registry.alerts(centre)
    assert alert.edge_raised_ms == ts + 7 and alert.count == 1
    assert registry.events(centre) == [(rule, "firing")]


def test_a_clock_suspect_readings_alert_id_derives_from_the_devices_own_time(
    registry: Registry, publisher: Publisher, start_engine: EngineFactory
) -> None:
    centre, gateway, oxi, rule = setup(registry)
    start_engine()
    rx = now_ms()
    device_ts = 1_000  # a device clock at 1970: stored at the receive time, flagged
    _ch, dev, body, _rx = publisher.record(oxi, "pulse_oximeter", device_ts, rx, spo2_pct=85.0)
    seq = publisher.seqs[oxi]
    envelope = encode_batch_parts(gateway, 1, [("telemetry", dev, body, rx, None, True)])
    publisher.send(topic(centre, gateway, Channel.GATEWAY_BATCH), envelope)
    wait_for(lambda: registry.alert(centre, rule) is not None, 5, "the alert")
    (alert,) = registry.alerts(centre)
    assert alert.started_ms == rx  # evaluated at its stored time
    assert alert.id == alert_id(
        rule, f"{centre}/{oxi}/-", device_ts, seq
    )  # named as the gateway names it
