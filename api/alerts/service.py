"""The running engine: its two MQTT sessions, its thread of rounds, its start and stop.

Thread ``alert-engine`` owns all evaluation (one concurrency model: paho's
network threads only queue). Each loop takes one lane's queued messages
(waiting at most until the next tick): the alerts raised at the centres (the
edge session's) whenever any are queued, in a round of their own, so they never
wait behind the bulk session's backlog; else the bulk session's, at most
``round_max`` messages, half the Receive Maximum (the broker sends the next
round's messages while one is evaluated) and :data:`ROUND_BYTES` of payload. It
runs one :meth:`api.alerts.engine.Engine.round`, in parts: between two parts it
wakes the notify worker and runs the edge alerts that came meanwhile (a round in
progress holds an edge alert back by a fraction of a second, a part's work). It
acknowledges messages after a
round that committed a *checkpoint*, each on the session it came on. A busy
engine (messages still queued after its take) checkpoints once half the
Receive Maximum is held unacknowledged, or :data:`CHECKPOINT_MAX_S` after the
last one; an idle one after every round: in between, the states that readings
only moved wait in memory
(:mod:`api.alerts.conditions`), so a state's row is written once per
checkpoint, not once per round, and a killed engine replays what it had not
acknowledged. A round that
queued notifications calls ``on_notified`` (the API's webhook worker's
``wake``), so they go out at once rather than at the worker's next poll. A
round the database did not take is tried again with the same messages after a
jittered backoff (the broker holds them unacknowledged meanwhile). Any other
failure of a round is a bug or a poison message: its messages are then
evaluated one by one, and one that fails alone is logged, counted and
acknowledged, so it cannot stop the engine.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Final

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from api.alerts.annotations import AlertAnnotations
from api.alerts.consumer import QOS0_ROOM, Consumer, Inbox, Lane, Message
from api.alerts.engine import Engine
from api.alerts.lifecycle import Tally
from api.alerts.metrics import EngineMetrics, OpenAlerts
from api.alerts.settings import AlertsSettings
from mqttlink.paho_link import MqttLink
from runtime.backoff import Backoff
from runtime.logs import kv

log = logging.getLogger(__name__)
STOP_WAIT_S: Final = 10.0
# a round takes no more messages once their payloads reach this (1,000 readings in gateway
# envelopes are 16-50 KB: 20,000-65,000 readings). The larger the round, the more readings
# each device brings to it, over which the rules' cost per device and round is spread
# (envelopes of 10 from 1,000 centres: 19.8-24.3 µs per reading against 29.3-32.5 with
# 128 KiB rounds); it is evaluated in parts (Engine.round's ``between``), between which
# the alerts raised at the centres go first, so they wait for a part, not for the round
ROUND_BYTES: Final = 1024 * 1024
# The garbage collector of a process that runs the engine (runtime.collector):
# its states, windows and plans are long-lived and a round makes thousands of
# short-lived readings. bench.alerts (a), 120,000 readings, same run: defaults
# 28.7 / 32.7 / 35.8 µs CPU per reading, these 24.6 / 23.0 / 20.6, peak RSS +2 MB.
GC_THRESHOLDS: Final = (50_000, 20, 100)
# a busy engine writes its states at least this often (what a kill makes it replay)
CHECKPOINT_MAX_S: Final = 5.0


class AlertService:
    def __init__(
        self,
        settings: AlertsSettings,
        sessions: sessionmaker[Session],
        metrics: EngineMetrics,
    ) -> None:
        self.settings = settings
        annotations = None
        if settings.influx_url:
            annotations = AlertAnnotations(
                settings.influx_url,
                settings.influx_db,
                settings.influx_user,
                settings.influx_password.get_secret_value(),
                settings.influx_timeout_s,
            )
        self.engine = Engine(settings, sessions, metrics, annotations)
        # both sessions' QoS 1 windows and room for QoS 0 (see api.alerts.consumer)
        self.inbox = Inbox(2 * settings.receive_maximum + QOS0_ROOM)
        self.consumer = Consumer(settings, self.inbox, Lane.BULK)
        self.edge = Consumer(settings, self.inbox, Lane.EDGE)
        self.consumers = (self.edge, self.consumer)
        self.metrics = metrics
        self.open_alerts = OpenAlerts(sessions)
        self.failed = 0  # messages dropped after failing alone
        self.failure: str | None = None  # the engine thread ended on an error (a bug)
        # called after a round that queued notifications committed (a webhook worker's wake)
        self.on_notified: Callable[[], None] | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="alert-engine", daemon=True)
        self._backoff = Backoff(0.2, 10.0)
        # at most half the broker's window: it sends the next round while one is evaluated
        self.round_max = max(1, min(settings.round_max, settings.receive_maximum // 2))
        # messages evaluated since the last checkpoint: acknowledged once it committed
        self.held: list[Message] = []
        self.hold_max = max(1, settings.receive_maximum // 2)
        self._edge_retry: list[Message] = []
        self._checkpointed = time.monotonic()

    @property
    def link(self) -> MqttLink:
        """The bulk session's link."""
        return self.consumer.link

    @property
    def links(self) -> list[MqttLink]:
        """Both sessions' links (a refusal of either stops the engine)."""
        return [c.link for c in self.consumers]

    @property
    def connected(self) -> bool:
        return all(c.connected for c in self.consumers)

    def start(self) -> None:
        self.engine.load()
        self._thread.start()
        for consumer in self.consumers:
            consumer.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(STOP_WAIT_S)
        for consumer in self.consumers:
            consumer.close()
        if self.engine.annotations is not None:
            self.engine.annotations.close()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    # -- the engine thread --------------------------------------------------------------

    def _run(self) -> None:
        """The rounds; an error they do not isolate ends the thread with one log line and
        :attr:`failure` set (its process then exits 1: ``gramlink alerts``, the API)."""
        try:
            self._rounds()
        except Exception as exc:
            log.exception(kv("alert_engine_failed", error=type(exc).__name__))
            self.failure = f"the alert engine failed: {type(exc).__name__}: {exc}"

    def _rounds(self) -> None:
        tick_s = self.settings.tick_s
        next_tick = time.monotonic()
        retry: list[Message] = []
        while not self._stop.is_set():
            # a round the database refused is tried again as it was (one lane, same size)
            messages = retry or self._take(max(next_tick - time.monotonic(), 0.0))
            tick = time.monotonic() >= next_tick
            if not messages and not tick:
                continue
            held = len(self.held) + len(messages)
            age = time.monotonic() - self._checkpointed
            checkpoint = checkpoint_due(held, self.hold_max, age, queued=len(self.inbox))
            try:
                self._round(messages, tick, checkpoint)
            except SQLAlchemyError as exc:
                self.metrics.round_failures.inc()
                log.warning("event=alert_round_failed error=%s", str(exc).splitlines()[0][:200])
                retry = messages
                self._stop.wait(self._backoff.next())
                continue
            retry = []
            self._backoff.reset()
            if tick:
                next_tick = time.monotonic() + tick_s
        if self.held:  # stopping: write what waits, so a restart need not replay it
            try:
                self._round([], False, True)
            except SQLAlchemyError as exc:
                log.warning(kv("alert_checkpoint_failed", error=str(exc).splitlines()[0][:200]))

    def _take(self, wait_s: float) -> list[Message]:
        """A round's messages: the edge session's alone if any are queued, else bulk ones
        (an edge round the database refused between two parts first)."""
        if self._edge_retry:
            messages, self._edge_retry = self._edge_retry, []
            return messages
        return self.inbox.take(self.round_max, min(wait_s, 0.5), ROUND_BYTES)

    def _between(self, part: Tally) -> None:
        """Between two parts of a bulk round: wake the notify worker for what the part
        queued (a clinical alert goes out now, not after the round), and evaluate the
        alerts raised at the centres that came meanwhile, in a round of their own."""
        if part.notifications and self.on_notified is not None:
            self.on_notified()
        edge = self.inbox.take_edge(self.round_max, ROUND_BYTES)
        if not edge:
            return
        try:
            self._round(edge, False, True)
        except SQLAlchemyError as exc:
            self.metrics.round_failures.inc()
            log.warning("event=alert_round_failed error=%s", str(exc).splitlines()[0][:200])
            self._edge_retry = edge  # the next round, after the one in progress

    def _round(self, messages: list[Message], tick: bool, checkpoint: bool) -> None:
        notified = 0
        try:
            notified = self.engine.round(
                messages, tick=tick, checkpoint=checkpoint, between=self._between
            ).notifications
        except SQLAlchemyError:
            raise
        except Exception:  # a bug or a poison message: isolate it
            log.exception("event=alert_round_error messages=%d", len(messages))
            self.metrics.round_failures.inc()
            for message in messages:
                try:
                    notified += self.engine.round([message], tick=False).notifications
                except SQLAlchemyError:
                    raise
                except Exception:
                    self.failed += 1
                    log.exception("event=alert_message_failed topic=%s", message.topic[:120])
        if notified and self.on_notified is not None:
            self.on_notified()  # committed: the notify worker may look now, not at its next poll
        self.held += messages
        if not self.engine.saved:
            return  # acknowledged with the checkpoint that writes their states
        held, self.held = self.held, []
        self._checkpointed = time.monotonic()
        for consumer in self.consumers:
            consumer.ack(held)
        now = time.monotonic()
        for message in held:
            self.metrics.lag.observe(now - message.arrived)


def checkpoint_due(held: int, hold_max: int, age_s: float, *, queued: int) -> bool:
    """Write every state in this round: ``held`` messages (this round's too) would reach
    half the broker's window, the last checkpoint is :data:`CHECKPOINT_MAX_S` old, or
    nothing more is ``queued`` (an idle engine keeps the registry current and
    acknowledges at once)."""
    return held >= hold_max or age_s >= CHECKPOINT_MAX_S or not queued
