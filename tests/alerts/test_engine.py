"""The alert engine end to end: readings published on the real central broker, the
registry rows and queued notifications it makes, the ``alerts`` points in InfluxDB."""

from __future__ import annotations

import sys

import httpx
import pytest

from api.db.models import AlertRule
from api.services.alert_actions import resolve
from gramlink.services import InfluxService
from tests.alerts.conftest import EngineFactory, Publisher, Registry, now_ms
from tests.factories import wait_for

MINUTE = 60_000
PATIENT = "ab" * 32  # a pseudonym (64 hex digits), what a gateway sends upstream


def firing_events(registry: Registry, centre: str, rule: str) -> list[str]:
    return [e for _r, e in registry.events(centre, rule)]


@pytest.mark.parametrize("registry", ["sqlite", "postgresql"], indirect=True)
def test_a_draining_battery_fires_once_after_the_duration_and_resolves_past_the_hysteresis(
    registry: Registry, publisher: Publisher, start_engine: EngineFactory, influx: InfluxService
) -> None:
    centre = registry.centre()
    power = registry.device(centre, "power")
    rule = registry.rule("battery-low", centre)  # < 20 % for 10 min, clears above 25 %
    registry.channel()
    start_engine()
    t0 = now_ms()  # device time runs a minute per reading (an accelerated clock)
    socs = [30 - i for i in range(22)]  # 19 % at minute 11: pending; minute 21: 10 min
    for i, soc in enumerate(socs[:-1]):
        publisher.reading(centre, power, "power", t0 + i * MINUTE, battery_soc_pct=soc)
    wait_for(lambda: registry.alert(centre, rule, "pending") is not None, 5, "pending alert")
    assert firing_events(registry, centre, rule) == []

    publisher.reading(centre, power, "power", t0 + 21 * MINUTE, battery_soc_pct=socs[-1])
    wait_for(lambda: firing_events(registry, centre, rule) == ["firing"], 5, "one notification")
    alert = registry.alert(centre, rule)
    assert alert is not None and alert.state == "firing"
    assert alert.fired_ms is not None and alert.fired_ms - alert.started_ms == 10 * MINUTE
    assert alert.value == socs[-1]

    # still low, then recovering but not past the hysteresis: folded in, not notified again
    publisher.reading(centre, power, "power", t0 + 22 * MINUTE, battery_soc_pct=8)
    publisher.reading(centre, power, "power", t0 + 23 * MINUTE, battery_soc_pct=24)
    wait_for(lambda: (registry.alert(centre, rule) or alert).count == 3, 5, "repeats folded")
    publisher.reading(centre, power, "power", t0 + 24 * MINUTE, battery_soc_pct=26)
    wait_for(lambda: firing_events(registry, centre, rule) == ["firing", "resolved"], 5, "resolved")
    done = registry.alert(centre, rule)
    assert done is not None and done.state == "resolved" and done.id == alert.id
    assert done.resolved_ms == t0 + 24 * MINUTE

    def annotated() -> set[str]:
        answer = httpx.get(
            f"{influx.url}/query",
            params={
                "db": influx.database,
                "q": f"SELECT * FROM alerts WHERE centre = '{centre}'",
            },
            auth=(influx.admin_user, influx.admin_password),
        ).json()
        series = answer["results"][0].get("series", [])
        if not series:
            return set()
        columns = series[0]["columns"]
        return {dict(zip(columns, row, strict=True))["state"] for row in series[0]["values"]}

    wait_for(lambda: annotated() == {"pending", "firing", "resolved"}, 10, "alerts points")


def test_a_silent_device_fires_absence(
    registry: Registry, publisher: Publisher, start_engine: EngineFactory
) -> None:
    centre = registry.centre()
    router = registry.device(centre, "router")
    power = registry.device(centre, "power")
    rule = registry.rule("device-silent", centre)  # three of its reporting intervals
    registry.channel()
    start_engine()
    t0 = now_ms()
    for i in range(4):  # every 10 s of device time
        publisher.reading(centre, router, "router", t0 + i * 10_000, wan_up=True)
    # the power unit keeps reporting: the centre's clock runs on past the router's silence
    for i in range(3, 9):
        publisher.reading(centre, power, "power", t0 + i * 10_000, battery_soc_pct=80)
    wait_for(lambda: firing_events(registry, centre, rule) == ["firing"], 5, "absence fired")
    alert = registry.alert(centre, rule)
    assert alert is not None and alert.device == router
    assert alert.detail["silent_since_ms"] == t0 + 30_000
    assert alert.started_ms == t0 + 60_000  # silent for 3 x 10 s

    publisher.reading(centre, router, "router", t0 + 90_000, wan_up=True)
    wait_for(lambda: firing_events(registry, centre, rule)[-1:] == ["resolved"], 5, "back")


def test_an_spo2_of_85_fires_a_clinical_alert_at_once_with_the_patient_and_the_value(
    registry: Registry, publisher: Publisher, start_engine: EngineFactory
) -> None:
    centre = registry.centre()
    oximeter = registry.device(centre, "pulse_oximeter")
    rule = registry.rule("spo2-low", centre)
    registry.channel()
    start_engine()
    publisher.measurement(
        centre, oximeter, "pulse_oximeter", now_ms(), spo2_pct=85, patient_ref=PATIENT
    )
    wait_for(lambda: bool(registry.notifications(centre)), 5, "a clinical notification")
    [note] = registry.notifications(centre)
    assert note.event == "firing" and note.clinical
    body = note.body["alert"]
    assert body["clinical"] and body["value"] == 85 and body["patient_ref"] == PATIENT
    assert body["severity"] == "critical" and body["rule_id"] == rule
    alert = registry.alert(centre, rule)
    assert alert is not None and alert.subject == f"{centre}/{oximeter}/{PATIENT}"


def test_a_raw_patient_id_never_reaches_an_alert(
    registry: Registry, publisher: Publisher, start_engine: EngineFactory
) -> None:
    centre = registry.centre()
    oximeter = registry.device(centre, "pulse_oximeter")
    rule = registry.rule("spo2-low", centre)
    registry.channel()
    start_engine()
    publisher.measurement(
        centre, oximeter, "pulse_oximeter", now_ms(), spo2_pct=80, patient_id="AADHAAR-1234"
    )
    wait_for(lambda: bool(registry.notifications(centre)), 5, "a clinical notification")
    alert = registry.alert(centre, rule)
    assert alert is not None and alert.patient_ref is None
    assert "AADHAAR" not in repr(registry.notifications(centre)[0].body)
    assert "AADHAAR" not in alert.subject + repr(alert.detail)


def test_a_silence_stops_notifications_but_the_alert_is_recorded(
    registry: Registry, publisher: Publisher, start_engine: EngineFactory
) -> None:
    centre = registry.centre()
    oximeter = registry.device(centre, "pulse_oximeter")
    rule = registry.rule("spo2-low", centre)
    other = registry.centre()  # not silenced
    other_rule = registry.rule("spo2-low", other)
    other_oximeter = registry.device(other, "pulse_oximeter")
    registry.channel()
    registry.silence(centre=centre)
    start_engine()
    publisher.measurement(
        centre, oximeter, "pulse_oximeter", now_ms(), spo2_pct=82, patient_ref=PATIENT
    )
    wait_for(lambda: registry.alert(centre, rule) is not None, 5, "the alert")
    alert = registry.alert(centre, rule)
    assert alert is not None and alert.state == "firing" and alert.silenced
    # a later reading of another, unsilenced centre is notified: the engine did queue
    publisher.measurement(other, other_oximeter, "pulse_oximeter", now_ms(), spo2_pct=82)
    wait_for(lambda: registry.events(other, other_rule) == [(other_rule, "firing")], 5, "other")
    assert registry.notifications(centre) == []


def test_bad_messages_are_counted_and_skipped(
    registry: Registry, publisher: Publisher, start_engine: EngineFactory
) -> None:
    centre = registry.centre()
    oximeter = registry.device(centre, "pulse_oximeter")
    rule = registry.rule("spo2-low", centre)
    running = start_engine()
    publisher.send(f"gl/v1/{centre}/{oximeter}/telemetry", b"{not json")
    publisher.send(f"gl/v1/{centre}/{oximeter}/_gateway/batch", b"not zlib")
    publisher.send(f"gl/v1/{centre}/{oximeter}/state", b'{"v": 2, "online": true}')
    publisher.measurement(centre, oximeter, "pulse_oximeter", now_ms(), spo2_pct=70)
    wait_for(lambda: registry.alert(centre, rule) is not None, 5, "the good reading evaluated")
    assert running.service.engine.refused >= 3
    assert running.service.alive


def test_a_centre_offline_is_one_alert_its_silent_devices_are_inhibited_and_its_backlog_episode_is_notified_once(  # noqa: E501
    registry: Registry, publisher: Publisher, start_engine: EngineFactory
) -> None:
    centre = registry.centre()
    gateway = registry.device(centre, "gateway", "gw")
    routers = [registry.device(centre, "router") for _ in range(3)]
    dead = registry.device(centre, "router")  # silent since before the outage
    power = registry.device(centre, "power")
    offline = registry.rule("centre-offline", centre, after="2s")
    silent = registry.rule("device-silent", centre, after="3s")
    battery = registry.rule("battery-low", centre)
    registry.channel()
    start_engine()
    publisher.state(centre, gateway, True, "gateway")
    t0 = now_ms()
    publisher.batch(
        centre,
        gateway,
        [publisher.record(dead, "router", t0 - 10_000, t0 - 10_000, wan_up=True)]
        + [publisher.record(r, "router", t0, t0, wan_up=True) for r in routers],
    )
    wait_for(lambda: registry.events(centre) == [(silent, "firing")], 5, "the dead router")
    publisher.state(centre, gateway, False)  # the uplink drops: the broker sends the Last Will

    def inhibited() -> list[str]:
        return [a.device for a in registry.alerts(centre, silent) if a.inhibited]

    wait_for(lambda: len(inhibited()) == 3, 15, "the silent routers' absence alerts")
    wait_for(lambda: len(registry.events(centre)) == 2, 5, "centre offline")
    assert registry.events(centre)[1] == (offline, "firing")
    alert = registry.alert(centre, offline)
    assert alert is not None and alert.subject == centre and alert.device is None
    assert alert.severity == "critical"

    # the centre comes back with six hours of backlog; one battery-low episode in it
    publisher.state(centre, gateway, True, "gateway")
    wait_for(lambda: registry.events(centre)[-1:] == [(offline, "resolved")], 5, "back")
    back = now_ms()
    start = back - 6 * 3_600_000
    socs = [50, 40] + [15] * 12 + [30, 32]  # below 20 % for 11 minutes, then recharged
    records = [
        publisher.record(power, "power", start + i * MINUTE, start + i * MINUTE, battery_soc_pct=s)
        for i, s in enumerate(socs)
    ]
    records += [publisher.record(r, "router", back, back, wan_up=True) for r in routers]
    publisher.batch(centre, gateway, records)
    wait_for(lambda: registry.events(centre, battery) == [(battery, "episode")], 5, "episode")
    episode = registry.alert(centre, battery)
    assert episode is not None and episode.during_outage and episode.state == "resolved"
    assert episode.started_ms == start + 2 * MINUTE
    assert episode.resolved_ms == start + 14 * MINUTE
    [note] = [n for n in registry.notifications(centre) if n.event == "episode"]
    assert note.body["alert"]["during_outage"] is True
    assert note.body["alert"]["started_ms"] == start + 2 * MINUTE

    # one alert for the centre, none for its devices: no storm, then or on its return
    assert registry.events(centre) == [
        (silent, "firing"),
        (offline, "firing"),
        (offline, "resolved"),
        (battery, "episode"),
    ]
    states = {a.device: a.state for a in registry.alerts(centre, silent)}
    assert states == {dead: "firing", **dict.fromkeys(routers, "resolved")}


def _centre_with_battery_rule(
    registry: Registry, start_engine: EngineFactory
) -> tuple[str, str, str, str]:
    """A centre with a gateway and a power unit, the battery-low rule, a channel, the
    engine started: (centre, gateway, power unit, rule)."""
    centre = registry.centre()
    gateway = registry.device(centre, "gateway", "gw")
    power = registry.device(centre, "power")
    battery = registry.rule("battery-low", centre)
    registry.channel()
    start_engine()
    return centre, gateway, power, battery


def _low_an_hour_ago(publisher: Publisher, power: str, start: int) -> list[tuple]:
    """Twelve records of a battery at 15 % from ``start``, received then: low for 11
    minutes while the centre was away (the rule fires in the backlog)."""
    return [
        publisher.record(power, "power", start + i * MINUTE, start + i * MINUTE, battery_soc_pct=15)
        for i in range(12)
    ]


def test_a_backlog_alert_still_open_is_notified_when_the_readings_are_live_again(
    registry: Registry, publisher: Publisher, start_engine: EngineFactory
) -> None:
    centre, gateway, power, battery = _centre_with_battery_rule(registry, start_engine)
    start = now_ms() - 3_600_000
    old = _low_an_hour_ago(publisher, power, start)
    publisher.batch(centre, gateway, old)
    wait_for(lambda: registry.alert(centre, battery, "firing") is not None, 5, "fired in backlog")
    alert = registry.alert(centre, battery)
    assert alert is not None and alert.during_outage and alert.notified is None
    assert registry.events(centre) == []

    live = now_ms()
    publisher.batch(
        centre, gateway, [publisher.record(power, "power", live, live, battery_soc_pct=14)]
    )
    wait_for(lambda: registry.events(centre) == [(battery, "firing")], 5, "firing once live")
    # an older reading (inside the rule's window) neither resolves nor reopens anything
    publisher.batch(
        centre,
        gateway,
        [publisher.record(power, "power", start + 30 * MINUTE, live, battery_soc_pct=90)],
    )
    publisher.batch(
        centre, gateway, [publisher.record(power, "power", live + 1000, live, battery_soc_pct=13)]
    )
    # the firing reading, one more from the backlog, two live ones; the late one ignored
    wait_for(lambda: (registry.alert(centre, battery) or alert).count == 4, 5, "folded")
    assert registry.alert(centre, battery, "firing") is not None
    assert registry.events(centre) == [(battery, "firing")]


def test_backlog_and_live_repeats_in_one_envelope_notify_once_and_count_every_reading(
    registry: Registry, publisher: Publisher, start_engine: EngineFactory
) -> None:
    centre, gateway, power, battery = _centre_with_battery_rule(registry, start_engine)
    start, live = now_ms() - 3_600_000, now_ms()
    records = _low_an_hour_ago(publisher, power, start) + [
        publisher.record(power, "power", live + i * 1000, live, battery_soc_pct=14)
        for i in range(3)  # still low, received now
    ]
    publisher.batch(centre, gateway, records)

    # pending, firing, one more repeat from the backlog, three live ones
    def counted() -> int:
        alert = registry.alert(centre, battery)
        return 0 if alert is None else alert.count

    wait_for(lambda: counted() == 5, 5, "every reading counted")
    assert registry.events(centre) == [(battery, "firing")]  # notified once, when live


def test_a_second_engine_with_the_same_client_id_takes_over_and_the_first_stops(
    registry: Registry, start_engine: EngineFactory
) -> None:
    first = start_engine()
    client_id = first.service.link.options.client_id
    start_engine(client_id=client_id)
    wait_for(lambda: first.service.link.refusal is not None, 15, "the first engine refused")
    refusal = first.service.link.refusal
    assert refusal is not None and refusal.exit_code == 5
    assert "GRAMLINK_ALERTS_CLIENT_ID" in refusal.line


@pytest.mark.parametrize("registry", ["sqlite", "postgresql"], indirect=True)
def test_a_disabled_rule_resolves_its_alerts_and_forgets_its_pending_ones(
    registry: Registry, publisher: Publisher, start_engine: EngineFactory
) -> None:
    centre = registry.centre()
    oximeter = registry.device(centre, "pulse_oximeter")
    power = registry.device(centre, "power")
    spo2 = registry.rule("spo2-low", centre)
    battery = registry.rule("battery-low", centre)
    registry.channel()
    start_engine()
    t0 = now_ms()
    publisher.measurement(centre, oximeter, "pulse_oximeter", t0, spo2_pct=80)
    publisher.reading(centre, power, "power", t0, battery_soc_pct=10)
    wait_for(lambda: registry.alert(centre, battery, "pending") is not None, 5, "pending")
    wait_for(lambda: registry.events(centre) == [(spo2, "firing")], 5, "firing")
    with registry.sessions.begin() as s:
        for rule_id in (spo2, battery):
            row = s.get(AlertRule, rule_id)
            assert row is not None
            row.enabled = False
    wait_for(lambda: registry.events(centre)[-1:] == [(spo2, "resolved")], 5, "resolved")
    assert registry.alerts(centre, battery) == []
    done = registry.alert(centre, spo2)
    assert done is not None and done.state == "resolved"
    assert done.detail["reason"] == "rule deleted or disabled"


class FakeSolar:
    """Stands in for ``alerting.solar`` (pvlib): half of a 2 kWh day expected so far."""

    class DayCurves:
        pass

    class ClearSky:
        made: list[tuple[float, float, float, float]] = []

        def __init__(
            self, lat: float, lon: float, offset_h: float, rated_w: float, *, curves: object
        ) -> None:
            FakeSolar.ClearSky.made.append((lat, lon, offset_h, rated_w))

        def expected_energy_wh(self, until_ms: int) -> float:
            return 1000.0

        def expected_day_energy_wh(self, day_ms: int) -> float:
            return 2000.0


def test_solar_yield_is_judged_against_the_centres_clear_sky_expectation(
    registry: Registry,
    publisher: Publisher,
    start_engine: EngineFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "alerting.solar", FakeSolar)
    centre = registry.centre(latitude=23.2, longitude=77.4, utc_offset_h=5.5, pv_rated_w=600)
    bare = registry.centre()  # no coordinates, no rated power: no expectation
    power, bare_power = registry.device(centre, "power"), registry.device(bare, "power")
    rule, bare_rule = registry.rule("solar-yield", centre), registry.rule("solar-yield", bare)
    registry.channel()
    start_engine()
    publisher.reading(bare, bare_power, "power", now_ms(), energy_today_wh=10)
    publisher.reading(centre, power, "power", now_ms(), energy_today_wh=100)  # 10 %
    wait_for(lambda: registry.events(centre) == [(rule, "firing")], 5, "solar yield low")
    alert = registry.alert(centre, rule)
    assert alert is not None and alert.value == 10.0
    assert alert.detail["expected_wh"] == 1000.0
    assert FakeSolar.ClearSky.made == [(23.2, 77.4, 5.5, 600)]
    assert registry.alerts(bare, bare_rule) == []


def test_an_alert_resolved_by_hand_while_the_trouble_lasts_comes_back_as_a_new_one(
    registry: Registry, publisher: Publisher, start_engine: EngineFactory
) -> None:
    centre = registry.centre()
    router = registry.device(centre, "router")
    power = registry.device(centre, "power")
    rule = registry.rule("device-silent", centre)
    registry.channel()
    running = start_engine()
    t0 = now_ms()
    for i in range(4):
        publisher.reading(centre, router, "router", t0 + i * 10_000, wan_up=True)
    for i in range(3, 9):
        publisher.reading(centre, power, "power", t0 + i * 10_000, battery_soc_pct=80)
    wait_for(lambda: registry.events(centre, rule) == [(rule, "firing")], 5, "absence fired")
    first = registry.alert(centre, rule)
    assert first is not None and first.device == router
    subject = f"{centre}/{router}"
    fired = running.service.engine.conditions.get(rule, subject)
    with registry.sessions.begin() as s:  # a technician resolves it (the API's service)
        resolve(s, "tech", first.id, "checked the cable")
    # the router is still silent: its timer restarts, and three intervals on (the power
    # unit's readings move the centre's clock) the engine raises a new alert
    wait_for(lambda: running.service.engine.conditions.get(rule, subject) != fired, 5, "reset")
    for i in range(9, 14):
        publisher.reading(centre, power, "power", t0 + i * 10_000, battery_soc_pct=80)
    wait_for(
        lambda: (
            registry.events(centre, rule)
            == [(rule, "firing"), (rule, "resolved")] * 1 + [(rule, "firing")]
        ),
        10,
        "a new absence alert",
    )
    alerts = registry.alerts(centre, rule)
    assert [a.state for a in alerts] == ["resolved", "firing"]
    assert alerts[0].id == first.id and alerts[0].resolved_by == "tech"


def test_envelopes_carrying_other_devices_newer_readings_do_not_make_a_device_look_silent(
    registry: Registry, publisher: Publisher, start_engine: EngineFactory
) -> None:
    centre = registry.centre()
    gateway = registry.device(centre, "gateway", "gw")
    a, b = registry.device(centre, "router"), registry.device(centre, "router")
    rule = registry.rule("device-silent", centre)  # three of its intervals: 3 minutes here
    running = start_engine(absence_min_wall_s=5)
    t0 = now_ms()
    engine = running.service.engine

    def evaluated(device: str, ts: int) -> bool:
        return (engine.conditions.get(rule, f"{centre}/{device}") or {}).get("last") == ts

    # a fast simulated clock: every envelope is 5 device minutes; b's arrive a tick or
    # two before a's (the centre's clock runs 5 minutes past a's last reading meanwhile)
    for k in range(4):
        at = [t0 + (5 * k + m) * MINUTE for m in range(5)]
        publisher.batch(centre, gateway, [publisher.record(b, "router", t, t) for t in at])
        wait_for(lambda at=at: evaluated(b, at[-1]), 5, "b's envelope")  # type: ignore[misc]
        rounds = running.rounds
        wait_for(lambda rounds=rounds: running.rounds >= rounds + 2, 5, "two ticks")  # type: ignore[misc]
        publisher.batch(centre, gateway, [publisher.record(a, "router", t, t) for t in at])
        wait_for(lambda at=at: evaluated(a, at[-1]), 5, "a's envelope")  # type: ignore[misc]
    assert registry.alerts(centre, rule) == []
