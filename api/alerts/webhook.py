"""The webhook delivery worker: queued notifications out to their channels' URLs.

One dispatcher thread takes due notifications from the registry database
(clinical first, then the longest waiting; :mod:`api.alerts.deliveries`),
claims them and hands them to ``concurrency`` sender threads, each with its
own HTTP client. One sender slot is kept for clinical notifications (when
there are two or more), so a clinical alert never waits behind slow receivers.
The engine may call :meth:`WebhookWorker.wake` after queueing; otherwise the
queue is looked at every ``poll_s``.

A try is a POST of the body, signed (:mod:`api.alerts.signing`). It ends as
one of (the ``outcome`` label of ``gramlink_notify_attempts``):

- ``delivered``: a 2xx. The notification is ``delivered``.
- ``refused``: a 3xx, or a 4xx other than 408 and 429: the receiver says the
  request itself is wrong (a bad URL, a secret it does not know); or the
  channel's URL cannot be requested at all (not http/https, malformed). The
  notification turns ``failed`` at once, so an administrator sees it, and is
  still retried every ``backoff_max_s``: fixing the receiver delivers it.
- ``http_error`` (5xx, 408, 429), ``timeout``, ``unreachable`` (connection
  refused, DNS, TLS): retried after a jittered exponential backoff
  (``runtime.backoff.delay``; a 429/503 ``Retry-After`` is honoured up to the
  cap). After ``failed_after`` tries it turns ``failed`` and is retried every
  ``backoff_max_s``, for ever: a notification is never dropped.

Every try is logged as a ``DeliveryAttempt`` (status code or error, duration).
This module raises nothing of its own: HTTP failures are outcomes, a database
failure is logged (once, then one "resumed" line) and the round is retried; an
unexpected error is logged in the outermost loop of the thread it hit.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
from prometheus_client import CollectorRegistry
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from api.alerts import deliveries, signing
from api.alerts.deliveries import Job, Result
from api.alerts.delivery_metrics import DeliveryMetrics
from api.db.models import Notification
from api.settings import ApiSettings
from runtime.backoff import delay
from runtime.logs import Throttle, kv

log = logging.getLogger(__name__)
USER_AGENT = "GramLink-Webhook/1"
ERROR_CHARS = 200  # of a receiver's answer or an exception, kept in the delivery log
BACKLOG_EVERY_S = 5.0  # how often the queued/failed gauges are refreshed


@dataclass(frozen=True)
class DeliveryOptions:
    concurrency: int = 4
    timeout_s: float = 10.0  # connect, write and read, each
    backoff_min_s: float = 5.0
    backoff_max_s: float = 600.0
    failed_after: int = 8
    poll_s: float = 1.0

    @classmethod
    def from_settings(cls, settings: ApiSettings) -> DeliveryOptions:
        return cls(
            concurrency=settings.notify_concurrency,
            timeout_s=settings.notify_timeout_s,
            backoff_min_s=settings.notify_backoff_min_s,
            backoff_max_s=settings.notify_backoff_max_s,
            failed_after=settings.notify_failed_after,
            poll_s=settings.notify_poll_s,
        )

    @property
    def lease_s(self) -> float:
        """How long a claim holds: longer than any one try can take (4 phases of timeout)."""
        return 4 * self.timeout_s + 30.0


class WebhookWorker:
    """Delivers queued notifications until :meth:`close`; ``start``/``close`` once each."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        options: DeliveryOptions,
        *,
        registry: CollectorRegistry | None = None,
        name: str = "webhook",
    ) -> None:
        self._sessions = sessions
        self._options = options
        self._registry = registry
        self._name = name
        self.metrics = DeliveryMetrics()
        self._rng = random.Random()
        self._jobs: queue.Queue[Job | None] = queue.Queue()
        self._lock = threading.Lock()
        self._in_flight = 0
        self._in_flight_other = 0  # non-clinical, at most concurrency - reserve
        self._reserve = 1 if options.concurrency > 1 else 0
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._dispatcher = threading.Thread(target=self._dispatch_loop, name=name, daemon=True)
        self._senders = [
            threading.Thread(target=self._send_loop, name=f"{name}-send-{i}", daemon=True)
            for i in range(options.concurrency)
        ]
        self._throttle = Throttle(log, 60.0)
        self._db_failing = False
        self._failing_channels: set[int] = set()
        self._backlog_at = 0.0
        self._started = False

    # --- lifetime --------------------------------------------------------------------

    def start(self) -> None:
        self._started = True
        if self._registry is not None:
            self.metrics.register(self._registry)
        for sender in self._senders:
            sender.start()
        self._dispatcher.start()
        log.info(kv("webhook_started", worker=self._name, concurrency=len(self._senders)))

    def close(self) -> None:
        """Stop taking work, finish the tries under way, hand back what was not sent."""
        self._stop.set()
        self._wake.set()
        if self._dispatcher.is_alive():
            self._dispatcher.join(timeout=30)
        handed_back = self._drain()
        for _ in self._senders:
            self._jobs.put(None)
        for sender in self._senders:
            if sender.is_alive():
                sender.join(timeout=self._options.lease_s)
        if self._registry is not None and self._started:
            self.metrics.unregister(self._registry)
        log.info(kv("webhook_stopped", worker=self._name, handed_back=handed_back))

    def wake(self) -> None:
        """Look at the queue now (call after committing a new notification)."""
        self._wake.set()

    # --- dispatcher ------------------------------------------------------------------

    def _dispatch_loop(self) -> None:
        while not self._stop.is_set():
            full = False
            try:
                self._refresh_backlog()
                full = self.dispatch()
            except SQLAlchemyError as exc:
                if not self._db_failing:
                    log.warning(kv("webhook_db_failing", error=str(exc)[:300]))
                self._db_failing = True
            except Exception as exc:  # outermost loop of this thread: say so, go on
                log.exception(kv("webhook_dispatch_crashed", error=exc))
            else:
                if self._db_failing:
                    log.warning(kv("webhook_db_resumed"))
                self._db_failing = False
                if full and self._free() > 0:
                    continue  # more may be due: look again at once
            self._wake.wait(self._options.poll_s)
            self._wake.clear()

    def _free(self) -> int:
        with self._lock:
            return len(self._senders) - self._in_flight

    def dispatch(self) -> bool:
        """Claim what is due for the free slots; True if every slot offered was filled."""
        with self._lock:
            free = len(self._senders) - self._in_flight
            free_other = min(free, len(self._senders) - self._reserve - self._in_flight_other)
        if free <= 0:
            return False
        now = datetime.now(UTC)
        with self._sessions() as session:
            candidates = deliveries.due(session, now, free)
        picked = []
        for notification, url, secret in candidates:
            if not notification.clinical:
                if free_other <= 0:
                    continue
                free_other -= 1
            picked.append((notification, url, secret))
        if not picked:
            return False
        lease = now + timedelta(seconds=self._options.lease_s)
        claimed: list[Job] = []
        with self._sessions.begin() as session:
            for notification, url, secret in picked:
                if deliveries.claim(session, notification, lease):
                    claimed.append(_job(notification, url, secret, lease))
        for job in claimed:
            with self._lock:
                self._in_flight += 1
                self._in_flight_other += 0 if job.clinical else 1
            self._jobs.put(job)
        return len(claimed) >= free

    def _drain(self) -> int:
        """Hand back the claimed jobs no sender took (at close)."""
        jobs = []
        while True:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                break
            if job is not None:
                jobs.append(job)
        if not jobs:
            return 0
        try:
            with self._sessions.begin() as session:
                for job in jobs:
                    deliveries.release(session, job)
        except SQLAlchemyError as exc:  # their leases run out instead
            log.warning(kv("webhook_release_failed", jobs=len(jobs), error=str(exc)[:300]))
        return len(jobs)

    def _refresh_backlog(self) -> None:
        now = time.monotonic()
        if now - self._backlog_at < BACKLOG_EVERY_S:
            return
        self._backlog_at = now
        with self._sessions() as session:
            backlog = deliveries.backlog(session)
        self.metrics.waiting.labels("queued").set(backlog.queued)
        self.metrics.waiting.labels("failed").set(backlog.failed)
        age = 0.0
        if backlog.oldest is not None:
            age = max(0.0, (datetime.now(UTC) - backlog.oldest).total_seconds())
        self.metrics.oldest_s.set(age)

    # --- senders ---------------------------------------------------------------------

    def _send_loop(self) -> None:
        with httpx.Client(
            timeout=self._options.timeout_s,
            follow_redirects=False,
            headers={"User-Agent": USER_AGENT},
        ) as client:
            while True:
                job = self._jobs.get()
                if job is None:
                    return
                try:
                    self._deliver(client, job)
                except Exception as exc:  # outermost loop of this thread: the lease runs out
                    log.exception(kv("webhook_send_crashed", delivery=job.id, error=exc))
                finally:
                    with self._lock:
                        self._in_flight -= 1
                        self._in_flight_other -= 0 if job.clinical else 1
                    self._wake.set()

    def _deliver(self, client: httpx.Client, job: Job) -> None:
        result, outcome = self._try(client, job)
        self.metrics.attempts.labels(outcome).inc()
        now = datetime.now(UTC)
        try:
            with self._sessions.begin() as session:
                kept = deliveries.record(session, job, result, now)
        except SQLAlchemyError as exc:
            log.warning(kv("webhook_record_failed", delivery=job.id, error=str(exc)[:300]))
            return
        if not kept:
            self.metrics.lost_leases.inc()
            log.warning(kv("webhook_lease_lost", delivery=job.id, outcome=outcome))
            return
        self._account(job, result, outcome, now)

    def _try(self, client: httpx.Client, job: Job) -> tuple[Result, str]:
        body = signing.encode_body(job.body)
        timestamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            signing.DELIVERY_HEADER: job.id,
            signing.EVENT_HEADER: job.event,
            signing.TIMESTAMP_HEADER: str(timestamp),
            signing.SIGNATURE_HEADER: signing.signature(job.secret, timestamp, body),
        }
        started = datetime.now(UTC)
        clock = time.perf_counter()
        code: int | None = None
        error: str | None = None
        retry_after: float | None = None
        try:
            with client.stream("POST", job.url, content=body, headers=headers) as response:
                code = response.status_code
                answer = _excerpt(response)  # bounded; a 2xx answer is not kept
                if not response.is_success:
                    error = answer
                    retry_after = _retry_after(response.headers.get("Retry-After"))
        except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:  # the channel's URL
            outcome, error = "refused", f"bad URL: {exc}"[:ERROR_CHARS]
        except httpx.TimeoutException as exc:
            outcome, error = "timeout", f"timeout: {type(exc).__name__}"
        except httpx.HTTPError as exc:  # connection refused, DNS, TLS, protocol
            outcome, error = "unreachable", f"{type(exc).__name__}: {exc}"[:ERROR_CHARS]
        else:
            outcome = _classify(code)
        duration_ms = (time.perf_counter() - clock) * 1000
        attempts = job.attempts + 1
        if outcome == "delivered":
            return Result(started, duration_ms, code, None, "delivered", None), outcome
        failed = outcome == "refused" or attempts >= self._options.failed_after
        cap = self._options.backoff_max_s
        wait = delay(self._options.backoff_min_s, cap, 30 if failed else attempts - 1, self._rng)
        if retry_after is not None:
            wait = min(cap, max(wait, retry_after))
        next_try = datetime.now(UTC) + timedelta(seconds=wait)
        status: deliveries.Status = "failed" if failed else "queued"
        return Result(started, duration_ms, code, error, status, next_try), outcome

    def _account(self, job: Job, result: Result, outcome: str, now: datetime) -> None:
        if result.status == "delivered":
            self.metrics.delivered.labels("true" if job.clinical else "false").inc()
            latency = (now - deliveries.aware(job.created_at)).total_seconds()
            self.metrics.delivery_seconds.observe(max(0.0, latency))
            with self._lock:
                resumed = job.channel_id in self._failing_channels
                self._failing_channels.discard(job.channel_id)
            if resumed:
                log.warning(kv("webhook_channel_resumed", channel=job.channel_id))
            return
        if result.status == "failed" and job.status != "failed":
            self.metrics.failed.inc()
            log.warning(
                kv(
                    "webhook_failed",
                    delivery=job.id,
                    channel=job.channel_id,
                    attempts=job.attempts + 1,
                    outcome=outcome,
                    error=result.error or "",
                )
            )
        with self._lock:
            self._failing_channels.add(job.channel_id)
        self._throttle.warning(
            "webhook_channel_failing",
            key=f"channel-{job.channel_id}",
            channel=job.channel_id,
            outcome=outcome,
            status_code=result.status_code or "",
            error=result.error or "",
        )


def _job(notification: Notification, url: str, secret: str, lease: datetime) -> Job:
    return Job(
        id=notification.id,
        channel_id=notification.channel_id,
        url=url,
        secret=secret,
        body=notification.body,
        event=notification.event,
        clinical=notification.clinical,
        attempts=notification.attempts,
        status=notification.status,
        created_at=notification.created_at,
        due=notification.next_try_at,
        lease=lease,
    )


def _classify(code: int | None) -> str:
    if code is None:
        return "unreachable"
    if 200 <= code < 300:
        return "delivered"
    if code >= 500 or code in (408, 429):
        return "http_error"
    return "refused"


def _excerpt(response: httpx.Response) -> str:
    """The start of a receiver's answer, for the delivery log."""
    head = b""
    for chunk in response.iter_bytes():
        head += chunk
        if len(head) >= ERROR_CHARS:
            break
    text = head[:ERROR_CHARS].decode("utf-8", "replace").strip()
    return f"HTTP {response.status_code}" + (f": {text}" if text else "")


def _retry_after(value: str | None) -> float | None:
    """A ``Retry-After`` in seconds (the HTTP-date form is not honoured)."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if seconds >= 0 else None
