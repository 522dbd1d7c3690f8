"""The command worker: runs devices' commands and twin updates off the network thread.

Two bounded queues: quick commands (reboot, set_interval, identify, twin) on
one thread, in arrival order; OTA downloads on their own threads so a slow
download never holds a reboot. When a queue is full the command is refused at
once with a ``failed`` ack (detail ``busy``), never silently lost. A command
whose ``expires`` (epoch ms, wall time) or MQTT message expiry has passed when
its turn comes is acknowledged ``failed`` with detail ``expired``.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Final

from contract.messages import Command, Twin
from firmware_sim.devices.base import Device
from firmware_sim.ota import run_ota

log = logging.getLogger(__name__)

QUEUE_SIZE: Final = 1000
OTA_WORKERS: Final = 2

_Job = tuple[Device, Command | Twin, float | None] | None


class CommandWorker:
    def __init__(self, now_ms: Callable[[], int], ota_timeout_s: float = 30.0) -> None:
        self.now_ms = now_ms
        self.ota_timeout_s = ota_timeout_s
        self._quick: queue.Queue[_Job] = queue.Queue(QUEUE_SIZE)
        self._ota: queue.Queue[_Job] = queue.Queue(QUEUE_SIZE)
        self._threads = [
            threading.Thread(target=self._run, args=(self._quick,), name="sim-cmd", daemon=True)
        ]
        self._threads += [
            threading.Thread(target=self._run, args=(self._ota,), name=f"sim-ota-{i}", daemon=True)
            for i in range(OTA_WORKERS)
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._quick.put(None)
        for _ in range(OTA_WORKERS):
            self._ota.put(None)
        for thread in self._threads:
            thread.join(5.0)

    def submit(self, device: Device, message: Command | Twin, deadline: float | None) -> None:
        """Called on the network thread: queue, or refuse with ``busy`` when full."""
        target = (
            self._ota if isinstance(message, Command) and message.name == "ota" else self._quick
        )
        try:
            target.put_nowait((device, message, deadline))
        except queue.Full:
            if isinstance(message, Command):
                device.ack(message.id, "failed", "busy")
            log.warning(
                "event=command_refused centre=%s device=%s reason=busy",
                device.centre,
                device.device_id,
            )

    def _run(self, jobs: queue.Queue[_Job]) -> None:
        while True:
            job = jobs.get()
            if job is None:
                return
            device, message, deadline = job
            try:
                self._execute(device, message, deadline)
            except Exception:  # outermost loop of a worker: one bad command never kills it
                log.exception(
                    "event=command_crashed centre=%s device=%s", device.centre, device.device_id
                )

    def _execute(self, device: Device, message: Command | Twin, deadline: float | None) -> None:
        now = self.now_ms()
        if isinstance(message, Twin):
            device.apply_twin(message, now)
            return
        wall_ms = time.time() * 1000
        if (message.expires is not None and message.expires < wall_ms) or (
            deadline is not None and deadline * 1000 < wall_ms
        ):
            device.ack(message.id, "failed", "expired")
            return
        log.info(
            "event=command centre=%s device=%s name=%s id=%s",
            device.centre,
            device.device_id,
            message.name,
            message.id,
        )
        if message.name == "ota":
            run_ota(device, message, self.now_ms, self.ota_timeout_s)
        else:
            device.run_command(message, now)
