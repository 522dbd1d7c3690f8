"""Local outlets of an alert raised at the centre: a command hook and SMS (``gammu-smsd``).

Both are optional (settings ``GRAMLINK_GATEWAY_ALERT_COMMAND``,
``GRAMLINK_GATEWAY_ALERT_SMS_NUMBERS`` with ``..._ALERT_SMS_CONFIG``) and run on
their own ``alert-outlets`` thread, never on the ingest thread: a slow modem or
hook never holds up readings. Each run is bounded by
``GRAMLINK_GATEWAY_ALERT_OUTLET_TIMEOUT_S`` (killed past it) and its failure is
logged and counted, never retried (the local broker's retained alert and the
upstream copy are the durable announcements).

- The command (split like a shell line, run without a shell) gets the
  :class:`contract.edge.EdgeAlert` JSON on stdin, for firing and resolved alerts.
- SMS: for a firing alert, one ``gammu-smsd-inject -c <config> TEXT <number> -text
  <text>`` per number, which queues the message in the running ``gammu-smsd``'s
  outbox; the daemon sends it through its modem. The text names the centre, the
  rule, the device and the value, never a patient.
"""

from __future__ import annotations

import logging
import os
import queue
import shlex
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from contract.edge import EdgeAlert
from runtime.logs import kv

log = logging.getLogger(__name__)
SMS_MAX_CHARS: Final = 160
QUEUE_SIZE: Final = 1000


@dataclass(frozen=True, slots=True)
class OutletOptions:
    command: str | None = None
    sms_numbers: tuple[str, ...] = ()
    sms_config: Path | None = None
    sms_inject: str = "gammu-smsd-inject"
    timeout_s: float = 10.0

    @property
    def any(self) -> bool:
        return bool(self.command) or bool(self.sms_numbers)


@dataclass
class OutletCounters:
    commands: int = 0
    sms: int = 0
    failed: int = 0
    dropped: int = 0  # the queue was full (a flood of alerts): logged, not run
    failures: list[str] = field(default_factory=list)


def sms_text(alert: EdgeAlert) -> str:
    at = time.strftime("%H:%M UTC", time.gmtime(alert.device_ts / 1000))
    value = "" if alert.value is None else f" {alert.metric or 'value'}={alert.value:g}"
    text = (
        f"GramLink {alert.centre}: {alert.severity.upper()} {alert.rule_name} -"
        f" {alert.device}{value} at {at} ({alert.alert_id})"
    )
    return text[:SMS_MAX_CHARS]


class Outlets:
    """Runs the configured outlets for each alert, one at a time, on its own thread."""

    def __init__(self, options: OutletOptions) -> None:
        self.options = options
        self.counters = OutletCounters()
        self._queue: queue.Queue[EdgeAlert | None] = queue.Queue(QUEUE_SIZE)
        self._thread = threading.Thread(target=self._run, name="alert-outlets", daemon=True)

    def start(self) -> None:
        if self.options.any:
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join(timeout)

    def submit(self, alert: EdgeAlert) -> None:
        if not self.options.any:
            return
        try:
            self._queue.put_nowait(alert)
        except queue.Full:
            self.counters.dropped += 1
            log.warning(kv("alert_outlet_dropped", alert=alert.alert_id, reason="queue_full"))

    def _run(self) -> None:
        while (alert := self._queue.get()) is not None:
            try:
                self.deliver(alert)
            except Exception as exc:  # the outlet thread's outermost loop: log, go on
                self._failed("outlet", alert, repr(exc))

    def deliver(self, alert: EdgeAlert) -> None:
        o = self.options
        if o.command:
            self._run_one("command", alert, shlex.split(o.command), alert.model_dump_json())
            self.counters.commands += 1
        if o.sms_numbers and alert.state == "firing":
            text = sms_text(alert)
            for number in o.sms_numbers:
                argv = [o.sms_inject]
                if o.sms_config is not None:
                    argv += ["-c", str(o.sms_config)]
                argv += ["TEXT", number, "-text", text]
                if self._run_one("sms", alert, argv, None):
                    self.counters.sms += 1

    def _run_one(self, what: str, alert: EdgeAlert, argv: list[str], stdin: str | None) -> bool:
        """Run ``argv`` in a process group of its own, killed whole past the timeout."""
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
        except OSError as exc:
            self._failed(what, alert, str(exc))
            return False
        try:
            _, stderr = proc.communicate((stdin or "").encode(), timeout=self.options.timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            self._failed(what, alert, f"timed out after {self.options.timeout_s:g} s")
            return False
        if proc.returncode != 0:
            error = stderr.decode(errors="replace").strip()[-200:]
            self._failed(what, alert, f"exit {proc.returncode}: {error}")
            return False
        log.info(kv("alert_outlet", outlet=what, alert=alert.alert_id, state=alert.state))
        return True

    def _failed(self, what: str, alert: EdgeAlert, error: str) -> None:
        self.counters.failed += 1
        self.counters.failures = [*self.counters.failures[-9:], f"{what}: {error}"]
        log.error(kv("alert_outlet_failed", outlet=what, alert=alert.alert_id, error=error))
