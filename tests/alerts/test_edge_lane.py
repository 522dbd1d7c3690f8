"""The engine's edge lane: an alert raised at a centre opens centrally ahead of a backlog.

The engine reads the alerts the centres' gateways raise (``_gateway/alert``) through a
session of its own, so the broker queues them apart from the bulk session's envelopes
and the engine takes them first. A clinical alert raised at a centre while the engine's
bulk session holds a long backlog (a centre back from an outage, the engine restarted)
opens centrally within a round, not after the backlog.
"""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from alerting.ids import alert_id
from api.alerts.consumer import Lane
from api.alerts.metrics import EngineMetrics
from api.alerts.service import AlertService
from contract.edge import alert_upstream_topic
from gramlink.services import InfluxService, MosquittoService
from tests.alerts.conftest import Publisher, Registry, Running, engine_settings, now_ms
from tests.alerts.test_edge_engine import edge_alert, setup
from tests.factories import wait_for

pytestmark = pytest.mark.timeout(120)

ENVELOPES = 200
RECORDS = 100  # router readings per envelope


def test_an_alert_raised_at_the_centre_opens_before_the_engines_backlog_is_evaluated(
    mosquitto: MosquittoService, influx: InfluxService, registry: Registry, publisher: Publisher
) -> None:
    centre, gateway, oxi, rule = setup(registry)
    router = registry.device(centre, "router")
    settings = engine_settings(mosquitto, influx, registry, round_max=1)
    first = Running(settings, registry)  # makes both sessions on the broker, then stops
    first.subscribed(publisher)
    first.close()

    # while the engine is down: a centre's backlog queued for its bulk session, then the
    # clinical reading and the alert its gateway raised for it, each in its lane
    t0 = now_ms() - 3_600_000
    for n in range(ENVELOPES):
        records = [
            publisher.record(router, "router", t0 + (n * RECORDS + i) * 10, t0, wan_up=True)
            for i in range(RECORDS)
        ]
        publisher.batch(centre, gateway, records)
    ts = now_ms()
    clinical = publisher.record(oxi, "pulse_oximeter", ts, ts, spo2_pct=85.0)
    publisher.batch(centre, gateway, [clinical])
    seq = publisher.seqs[oxi]
    raised = ts + 30
    edge = edge_alert(centre, oxi, rule, ts, seq, raised)
    publisher.send(alert_upstream_topic(centre, gateway), edge)
    backlog = ENVELOPES * RECORDS + 1

    service = AlertService(settings, registry.sessions, EngineMetrics(CollectorRegistry()))
    evaluated_at_open: list[int] = []
    # the notify worker's wake: called on the engine thread right after the round that
    # queued the alert's notification committed
    service.on_notified = lambda: evaluated_at_open.append(service.engine.evaluated)
    service.start()
    try:
        wait_for(lambda: registry.alert(centre, rule) is not None, 30, "the clinical alert")
        wait_for(lambda: service.engine.evaluated >= backlog, 60, "the backlog evaluated")
        # one alert, opened from the gateway's message before most of the backlog was read
        (alert,) = registry.alerts(centre)
        assert alert.id == alert_id(rule, f"{centre}/{oxi}/-", ts, seq)
        assert alert.edge_raised_ms == raised and alert.state == "firing" and alert.count == 1
        assert evaluated_at_open and evaluated_at_open[0] < backlog // 2, evaluated_at_open
        # its reading, evaluated last, changed nothing: notified once
        assert registry.events(centre) == [(rule, "firing")]
    finally:
        service.close()


def test_an_alert_raised_at_the_centre_during_a_large_round_opens_between_two_of_its_parts(
    mosquitto: MosquittoService, influx: InfluxService, registry: Registry, publisher: Publisher
) -> None:
    centre, gateway, oxi, rule = setup(registry)
    routers = [registry.device(centre, "router", f"rt{n}") for n in range(10)]
    settings = engine_settings(mosquitto, influx, registry, round_max=ENVELOPES)
    first = Running(settings, registry)  # makes both sessions on the broker, then stops
    first.subscribed(publisher)
    first.close()
    t0 = now_ms() - 3_600_000
    for n in range(ENVELOPES):  # one round's worth: 20,000 readings of ten devices
        records = [
            publisher.record(
                routers[i % 10], "router", t0 + (n * RECORDS + i) * 10, t0, wan_up=True
            )
            for i in range(RECORDS)
        ]
        publisher.batch(centre, gateway, records)
    backlog = ENVELOPES * RECORDS

    service = AlertService(settings, registry.sessions, EngineMetrics(CollectorRegistry()))
    ts = now_ms()
    seq = 1
    edge = edge_alert(centre, oxi, rule, ts, seq, ts + 30)
    evaluate = service.engine.round
    opened_at: list[int] = []

    def round_with_an_alert_coming(messages: list[Any], **kwargs: Any) -> Any:
        # the large round has been taken: the centre's alert arrives while it is evaluated
        if len(messages) == ENVELOPES:
            publisher.send(alert_upstream_topic(centre, gateway), edge)
            wait_for(lambda: service.inbox.take_edge(0, 0) == [] and _edge_queued(service), 10,
                     "the alert in the edge lane")  # fmt: skip
        elif not opened_at:
            opened_at.append(service.engine.evaluated)
        return evaluate(messages, **kwargs)

    service.engine.round = round_with_an_alert_coming  # type: ignore[method-assign]
    # the sessions first, so that the engine's first take finds the whole backlog queued
    service.engine.load()
    for consumer in service.consumers:
        consumer.start()
    try:
        wait_for(lambda: len(service.inbox) >= ENVELOPES, 30, "the backlog in the inbox")
        service._thread.start()
        wait_for(lambda: service.engine.evaluated >= backlog, 60, "the backlog evaluated")
        wait_for(lambda: registry.alert(centre, rule) is not None, 10, "the clinical alert")
        (alert,) = registry.alerts(centre)
        assert alert.id == alert_id(rule, f"{centre}/{oxi}/-", ts, seq)
        # its round ran between two parts of the large one, not after it
        assert opened_at and 0 < opened_at[0] < backlog, opened_at
    finally:
        service.close()


def _edge_queued(service: AlertService) -> bool:
    return len(service.inbox) > 0 and bool(service.inbox._lanes[Lane.EDGE])
