"""Prometheus metrics of the firmware campaigns, on the registry they are given (/metrics).

What a fleet operator graphs and alerts on: campaigns by status, the devices of
each live campaign (running, paused or halted) by state and the stage it is in,
counted in the registry when scraped; the runner's ``ota`` command outcomes and
the time of its last pass, counted by the process. Labels are a campaign's id,
a status, a state or an outcome, never a device or a centre.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Final, get_args

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from api.db.models import Campaign, CampaignDevice
from api.firmware_schemas import CampaignStatus, DeviceState

STATUSES: Final = get_args(CampaignStatus)
STATES: Final = get_args(DeviceState)
LIVE: Final = ("running", "paused", "halted")  # a halted campaign waits for an admin
OUTCOMES: Final = ("sent", "succeeded", "failed", "expired", "busy")


class CampaignCounts(Collector):
    """``gramlink_campaigns{status}``, ``gramlink_campaign_devices{campaign,state}`` and
    ``gramlink_campaign_stage{campaign}`` (1-based), from the registry at each scrape."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            with self._sessions() as session:
                statuses = session.execute(
                    select(Campaign.status, func.count()).group_by(Campaign.status)
                ).all()
                live = session.execute(
                    select(Campaign.id, Campaign.current_stage).where(Campaign.status.in_(LIVE))
                ).all()
                states = session.execute(
                    select(CampaignDevice.campaign_id, CampaignDevice.state, func.count())
                    .join(Campaign, Campaign.id == CampaignDevice.campaign_id)
                    .where(Campaign.status.in_(LIVE))
                    .group_by(CampaignDevice.campaign_id, CampaignDevice.state)
                ).all()
        except SQLAlchemyError:
            return  # the registry is down: no figure rather than a wrong one
        by_status = dict.fromkeys(STATUSES, 0) | {status: int(n) for status, n in statuses}
        campaigns = GaugeMetricFamily(
            "gramlink_campaigns", "campaigns by status", labels=["status"]
        )
        for status, n in by_status.items():
            campaigns.add_metric([status], n)
        yield campaigns
        devices = GaugeMetricFamily(
            "gramlink_campaign_devices",
            "devices of each running, paused or halted campaign by state",
            labels=["campaign", "state"],
        )
        stage = GaugeMetricFamily(
            "gramlink_campaign_stage",
            "the stage each running, paused or halted campaign is in (1-based)",
            labels=["campaign"],
        )
        counts = {(cid, state): int(n) for cid, state, n in states}
        for cid, current in sorted(live):
            stage.add_metric([str(cid)], current + 1)
            for state in STATES:
                devices.add_metric([str(cid), state], counts.get((cid, state), 0))
        yield devices
        yield stage

    def describe(self) -> Iterator[GaugeMetricFamily]:
        return iter(())


class CampaignMetrics:
    """The runner's counters and the registry's counts; :meth:`close` takes them off."""

    def __init__(self, registry: CollectorRegistry, sessions: sessionmaker[Session]) -> None:
        self.registry = registry
        self.ota = Counter(
            "gramlink_campaign_ota_commands",
            "ota commands the campaign runner sent (sent) and how they ended: the version "
            "announced (succeeded), refused or failed by the device (failed), no answer in "
            "time (expired) or the device busy (busy); expired and busy are retried",
            ["outcome"],
            registry=registry,
        )
        for outcome in OUTCOMES:
            self.ota.labels(outcome)
        self.last_tick = Gauge(
            "gramlink_campaign_runner_last_tick_timestamp_seconds",
            "when the campaign runner last finished a pass (Unix time)",
            registry=registry,
        )
        self.counts = CampaignCounts(sessions)
        registry.register(self.counts)

    def ticked(self) -> None:
        self.last_tick.set(time.time())

    def close(self) -> None:
        for collector in (self.ota, self.last_tick, self.counts):
            self.registry.unregister(collector)
