"""A fleet spread over worker processes (one per core) for load tests.

One Python process is bound by the GIL to about one core; ``WorkerFleet``
splits the centres round-robin over N processes, each running an ordinary
:class:`~firmware_sim.fleet.Fleet` with its own connections, and sums their
stats. Same lifetime API as ``Fleet``: ``start``/``wait_connected``/``run``/
``stats``/``fatal``/``stop`` and the ``done`` event. Readings are the same as
with one process (they depend on seed, device and simulated time only); a
``readings`` bound is split evenly over the workers.

Workers report a :class:`Stats` snapshot about every 0.25 s over a pipe; a
worker that dies is reported by ``fatal()``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import multiprocessing
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from firmware_sim.errors import ConfigError
from firmware_sim.fleet import Fleet, FleetConfig
from firmware_sim.stats import Stats
from runtime.logs import configure

log = logging.getLogger(__name__)

REPORT_S = 0.25


def _worker_main(
    config: FleetConfig,
    readings: int | None,
    duration_s: float | None,
    log_level: int,
    drain_s: float,
    conn: Connection,
) -> None:
    configure(logging.getLevelName(log_level))
    fleet = Fleet(config)
    try:
        fleet.start(readings=readings, duration_s=duration_s)
        conn.send(("connected", fleet.wait_connected(30.0)))
        deadline = time.monotonic() + duration_s if duration_s else None
        while not fleet.done.is_set() and not fleet.fatal():
            if conn.poll(REPORT_S):
                break  # the parent asked us to stop
            conn.send(("stats", fleet.stats()))
            if deadline is not None and time.monotonic() >= deadline:
                break
        conn.send(("finished", fleet.stats()))
    except KeyboardInterrupt:
        pass
    finally:
        fleet.stop(drain_s)
        with contextlib.suppress(OSError, ValueError):
            conn.send(("final", (fleet.stats(), fleet.fatal())))
        conn.close()


class WorkerFleet:
    """``workers`` processes, each a Fleet over every ``workers``-th centre."""

    def __init__(self, config: FleetConfig, workers: int, drain_s: float = 10.0) -> None:
        if workers < 1:
            raise ConfigError("workers must be at least 1")
        centres = config.centre_list()
        workers = min(workers, len(centres))
        self.config = config
        self.drain_s = drain_s  # each worker's Fleet.stop(drain_s)
        target = config.scenario_centre or centres[0]  # the scenario stays on one centre
        self.configs = [
            dataclasses.replace(
                config,
                centre_ids=tuple(centres[i::workers]),
                roster=tuple(r for r in config.roster if r[0] in centres[i::workers]),
                scenario=config.scenario if target in centres[i::workers] else None,
                scenario_centre=target if target in centres[i::workers] else None,
            )
            for i in range(workers)
        ]
        self.done = threading.Event()
        self._ctx = multiprocessing.get_context("spawn")
        self._procs: list[Any] = []
        self._conns: list[Connection] = []
        self._latest: list[Stats | None] = [None] * workers
        self._finished = [False] * workers
        self._connected: list[bool | None] = [None] * workers
        self._fatal: list[str | None] = [None] * workers
        self._final = [threading.Event() for _ in range(workers)]
        self._readers: list[threading.Thread] = []
        self._deadline: float | None = None

    def start(self, *, readings: int | None = None, duration_s: float | None = None) -> None:
        n = len(self.configs)
        shares: list[int | None] = [None] * n
        if readings is not None:
            shares = [readings // n + (1 if i < readings % n else 0) for i in range(n)]
        level = logging.getLogger().getEffectiveLevel()
        self._deadline = time.monotonic() + duration_s if duration_s else None
        for i, config in enumerate(self.configs):
            parent, child = self._ctx.Pipe()
            proc = self._ctx.Process(
                target=_worker_main,
                args=(config, shares[i], duration_s, level, self.drain_s, child),
                name=f"sim-worker-{i}",
                daemon=True,
            )
            proc.start()
            child.close()
            self._procs.append(proc)
            self._conns.append(parent)
            reader = threading.Thread(target=self._read, args=(i, parent), daemon=True)
            reader.start()
            self._readers.append(reader)

    def _read(self, i: int, conn: Connection) -> None:
        try:
            while True:
                kind, value = conn.recv()
                if kind == "connected":
                    self._connected[i] = bool(value)
                elif kind == "stats":
                    self._latest[i] = value
                elif kind == "finished":
                    self._latest[i] = value
                    self._mark_finished(i)
                elif kind == "final":
                    self._latest[i], self._fatal[i] = value
                    break
        except (EOFError, OSError):
            if self._latest[i] is None or not self._final[i].is_set():
                self._fatal[i] = self._fatal[i] or f"worker {i} exited"
        finally:
            self._mark_finished(i)
            self._final[i].set()

    def _mark_finished(self, i: int) -> None:
        self._finished[i] = True
        if all(self._finished):
            self.done.set()

    def wait_connected(self, timeout: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(c is not None for c in self._connected):
                return all(bool(c) for c in self._connected)
            time.sleep(0.05)
        return False

    def run(
        self,
        *,
        readings: int | None = None,
        duration_s: float | None = None,
        progress: Callable[[Stats], None] | None = None,
    ) -> Stats:
        self.start(readings=readings, duration_s=duration_s)
        try:
            while not self.done.wait(1.0):
                if progress is not None:
                    progress(self.stats())
                if self.fatal():
                    break
        finally:
            self.stop()
        return self.stats()

    def fatal(self) -> str | None:
        reasons = [r for r in self._fatal if r]
        return reasons[0] if reasons else None

    def stop(self, drain_s: float | None = None) -> None:
        """Ask every worker to stop; wait for its final stats (its own drain, then disconnect)."""
        drain_s = self.drain_s if drain_s is None else drain_s
        for conn in self._conns:
            with contextlib.suppress(OSError, ValueError):
                conn.send(("stop", None))
        for i, proc in enumerate(self._procs):
            self._final[i].wait(drain_s + 10.0)
            proc.join(5.0)
            if proc.is_alive():
                proc.terminate()
                proc.join(5.0)
        self.done.set()

    def stats(self) -> Stats:
        snaps = [s for s in self._latest if s is not None]
        if not snaps:
            return Stats(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0.0)
        total: dict[str, Any] = {
            f.name: sum(getattr(s, f.name) for s in snaps) for f in dataclasses.fields(Stats)
        }
        total["elapsed_s"] = max(s.elapsed_s for s in snaps)
        return Stats(**total)
