"""A fleet: centres of simulated devices, their MQTT links and one scheduler.

Threads: the scheduler (steps devices in simulated-time order and publishes),
the network loop (all sockets), the command workers. Usage::

    fleet = Fleet(FleetConfig(port=1883, centres=3, username="admin", password="..."))
    fleet.start(); fleet.wait_connected()
    ...; print(fleet.stats().line())
    fleet.stop()

or ``fleet.run(duration_s=60)`` / ``fleet.run(readings=100_000)``.
"""

from __future__ import annotations

import heapq
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from contract.messages import Command, Twin
from contract.metrics import DeviceKind
from contract.topics import TopicError, check_id
from firmware_sim.clock import AcceleratedClock, BackfillClock, Clock, RealClock
from firmware_sim.commands import CommandWorker
from firmware_sim.devices import KINDS, Device
from firmware_sim.errors import ConfigError
from firmware_sim.faults import FaultConfig, FaultInjector
from firmware_sim.link import Link
from firmware_sim.netloop import NetLoop
from firmware_sim.rawlink import RawLink
from firmware_sim.seeding import stream
from firmware_sim.site import SiteFacts, build_centre
from firmware_sim.stats import Counters, Stats
from mqttlink.endpoint import TlsFiles, tls_context
from runtime.logs import Throttle

log = logging.getLogger(__name__)

Mode = Literal["device", "centre"]
ClientKind = Literal["paho", "raw"]
AnyLink = Link | RawLink


@dataclass(frozen=True)
class FleetConfig:
    host: str = "127.0.0.1"
    port: int = 1883
    centres: int = 1
    devices_per_centre: int = 7
    centre_prefix: str = "c"
    centre_ids: tuple[str, ...] = ()  # explicit ids; else {prefix}{001..N}
    mode: Mode = "device"
    seed: int = 1
    accelerate: float | None = None  # None: real time
    start_ms: int | None = None  # simulated start (accelerated / backfill); None: now
    backfill_end_ms: int | None = None  # set: backfill from start_ms to here, as fast as possible
    username: str | None = None
    password: str | None = None
    credentials: Mapping[str, tuple[str, str]] = field(default_factory=dict)  # device -> (u, p)
    interval_s: int | None = None  # telemetry interval for every device (None: per kind)
    telemetry_qos: Literal[0, 1] = 1
    validate: bool | None = None  # None: validate in device mode, fast encode in centre mode
    will_delay_s: int = 5
    session_expiry_s: int = 300
    keepalive_s: int = 30
    max_inflight: int = 1000
    max_queued: int = 10_000
    ota_timeout_s: float = 30.0
    faults: FaultConfig = field(default_factory=FaultConfig)
    client: ClientKind | None = None  # None: raw MQTT in centre mode, paho in device mode
    tls: bool = False  # mqtts://: TLS with ``tls_files`` (the system's CAs when no CA file)
    tls_files: TlsFiles = field(default_factory=TlsFiles)
    scenario: str | None = None  # a named scenario (firmware_sim/scenario.py) for one centre
    scenario_centre: str | None = None  # the centre it applies to (None: the first one)
    # where centres are (latitude, longitude); the others are placed from the seed
    places: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    # explicit devices (centre, device id, kind), e.g. a credentials sheet's rows; empty:
    # each centre gets the standard set of ``devices_per_centre``
    roster: tuple[tuple[str, str, str], ...] = ()

    def centre_list(self) -> list[str]:
        if self.roster:
            return list(dict.fromkeys(centre for centre, _, _ in self.roster))
        ids = list(self.centre_ids) or [
            f"{self.centre_prefix}{i:03d}" for i in range(1, self.centres + 1)
        ]
        try:
            return [check_id(c, "centre") for c in ids]
        except TopicError as exc:
            raise ConfigError(str(exc)) from None

    def layouts(self) -> dict[str, list[tuple[str, type[Device]]]]:
        """Per centre, the roster's devices by kind (gateways are not simulated: skipped)."""
        out: dict[str, list[tuple[str, type[Device]]]] = {}
        for centre, device, kind in self.roster:
            if kind == DeviceKind.GATEWAY.value:
                continue
            cls = KINDS.get(kind)
            if cls is None:
                raise ConfigError(f"device {device}: kind {kind!r} cannot be simulated")
            try:
                out.setdefault(check_id(centre, "centre"), []).append(
                    (check_id(device, "device"), cls)
                )
            except TopicError as exc:
                raise ConfigError(str(exc)) from None
        return out

    def make_clock(self) -> Clock:
        if self.backfill_end_ms is not None:
            if self.start_ms is None:
                raise ConfigError("backfill needs a start time")
            return BackfillClock(self.start_ms, self.backfill_end_ms)
        if self.accelerate is not None and self.accelerate != 1:
            return AcceleratedClock(self.accelerate, self.start_ms)
        return RealClock()


class Fleet:
    def __init__(self, config: FleetConfig) -> None:
        self.config = config
        self.clock = config.make_clock()
        self.counters = Counters()
        self.faults = FaultInjector(config.faults, config.seed)
        self.loop = NetLoop()
        # One TLS context for every link (built once; TlsFileError names the setting).
        self.tls_context = tls_context(config.tls_files) if config.tls else None
        self.throttle = Throttle(log)  # one certificate error line a minute for the fleet
        self.worker = CommandWorker(self.clock.now_ms, config.ota_timeout_s)
        self.devices: dict[str, Device] = {}
        self.sites: dict[str, SiteFacts] = {}  # per centre: what the registry should know
        self.links: list[AnyLink] = []
        self._link_of: dict[str, AnyLink] = {}
        self._stop = threading.Event()
        self._wake = threading.Event()  # set on stop or when a device's schedule changed
        self._resched: deque[str] = deque()
        self._started = False
        self._stopped = False
        self.done = threading.Event()
        self._max_readings: int | None = None
        self._deadline: float | None = None
        self._scheduler = threading.Thread(target=self._schedule, name="sim-scheduler", daemon=True)
        self._build()

    def _build(self) -> None:
        cfg = self.config
        start = self.clock.now_ms()
        validate = cfg.validate if cfg.validate is not None else cfg.mode == "device"
        centres = cfg.centre_list()
        target = cfg.scenario_centre or centres[0]
        if cfg.scenario is not None and target not in centres:
            raise ConfigError(f"scenario centre {target!r} is not one of the fleet's centres")
        layouts = cfg.layouts() if cfg.roster else {}
        if cfg.roster:
            centres = [c for c in centres if c in layouts]
            if not centres:
                raise ConfigError("the credentials sheet lists no device to simulate")
        for centre in centres:
            env, devices = build_centre(
                centre,
                cfg.seed,
                start,
                cfg.devices_per_centre,
                validate=validate,
                interval_s=cfg.interval_s,
                scenario=cfg.scenario if centre == target else None,
                place=cfg.places.get(centre),
                layout=layouts.get(centre),
            )
            self.sites[centre] = SiteFacts.of(env, devices)
            for device in devices:
                device.http_auth = self._login_of(device.device_id)
                device.skew_ms = self.faults.skew_ms(device.device_id)
                device.on_reschedule = self._reschedule
                self.devices[device.device_id] = device
            groups = [devices] if cfg.mode == "centre" else [[d] for d in devices]
            for group in groups:
                self._add_link(centre, group)

    def _login_of(self, device_id: str) -> tuple[str, str] | None:
        """A device's own login (its firmware downloads use it too)."""
        cfg = self.config
        if device_id in cfg.credentials:
            return cfg.credentials[device_id]
        if cfg.username is not None and cfg.password is not None:
            return cfg.username, cfg.password
        return None

    def _add_link(self, centre: str, group: list[Device]) -> None:
        cfg = self.config
        name = f"sim-{centre}" if cfg.mode == "centre" else f"sim-{group[0].device_id}"
        username, password = cfg.username, cfg.password
        if cfg.mode == "device" and group[0].device_id in cfg.credentials:
            username, password = cfg.credentials[group[0].device_id]
        raw = (cfg.client or ("raw" if cfg.mode == "centre" else "paho")) == "raw"
        if raw and cfg.mode != "centre":
            raise ConfigError(
                "GRAMLINK_SIM_CLIENT: raw is for per-centre mode (--mode centre) only"
            )
        extra: dict[str, Any] = {"tls": self.tls_context, "throttle": self.throttle}
        link_cls: type[Link] | type[RawLink] = RawLink if raw else Link
        link = link_cls(
            self.loop,
            name,
            cfg.host,
            cfg.port,
            username,
            password,
            group,
            counters=self.counters,
            on_command=self._on_command,
            now_ms=self.clock.now_ms,
            centre_wide=cfg.mode == "centre",
            will_delay_s=cfg.will_delay_s,
            session_expiry_s=cfg.session_expiry_s,
            keepalive_s=cfg.keepalive_s,
            max_inflight=cfg.max_inflight,
            max_queued=cfg.max_queued,
            rng=stream(cfg.seed, name, "backoff"),
            **extra,
        )
        self.links.append(link)
        for device in group:
            self._link_of[device.device_id] = link

    def _reschedule(self, device_id: str) -> None:
        self._resched.append(device_id)
        self._wake.set()

    def _on_command(self, device: Device, message: Command | Twin, deadline: float | None) -> None:
        self.worker.submit(device, message, deadline)

    # --- lifetime --------------------------------------------------------------------------------
    def start(self, *, readings: int | None = None, duration_s: float | None = None) -> None:
        """Connect every link and start publishing (bounded by ``readings`` / ``duration_s``)."""
        self._started = True
        self._max_readings = readings
        self._deadline = time.monotonic() + duration_s if duration_s else None
        self.counters.started = time.monotonic()
        self.worker.start()
        self.loop.start()
        if self.config.faults.offline_every_s:
            self.loop.every_tick(self._maybe_cut)
        for link in self.links:
            link.start()
        self._scheduler.start()

    def wait_connected(self, timeout: float = 30.0) -> bool:
        """True once every link finished its first connect attempt successfully."""
        deadline = time.monotonic() + timeout
        for link in self.links:
            if not link.first_connect.wait(max(0.0, deadline - time.monotonic())):
                return False
        return all(link.connected for link in self.links)

    def run(
        self,
        *,
        readings: int | None = None,
        duration_s: float | None = None,
        progress: Callable[[Stats], None] | None = None,
    ) -> Stats:
        """Start, publish until a bound (or the backfill's end), stop; return the final stats."""
        self.start(readings=readings, duration_s=duration_s)
        try:
            while not self.done.wait(1.0):
                if progress is not None:
                    progress(self.stats())
                if self.fatal() or (self._deadline and time.monotonic() >= self._deadline):
                    break
        finally:
            self.stop()
        return self.stats()

    def fatal(self) -> str | None:
        """A reason to give up (every link refused its login), else None."""
        refused = [link.fatal for link in self.links if link.fatal]
        if refused and len(refused) == len(self.links):
            return refused[0]
        return None

    def stop(self, drain_s: float = 10.0) -> None:
        """Stop publishing, let in-flight messages finish (up to ``drain_s``), go offline."""
        if not self._started or self._stopped:
            return
        self._stopped = True
        self._stop.set()
        self._wake.set()
        if self._scheduler.is_alive():
            self._scheduler.join(10.0)
        deadline = time.monotonic() + drain_s
        while time.monotonic() < deadline and not self.drained():
            time.sleep(0.02)
        for link in self.links:
            link.stop()
        self.worker.stop()
        self.loop.stop()

    def drained(self) -> bool:
        """True when no connected link has a publish waiting for its acknowledgement."""
        return not any(link.connected and link.outstanding > 0 for link in self.links)

    def stats(self) -> Stats:
        c = self.counters
        return Stats(
            readings=c.readings,
            messages=sum(link.messages for link in self.links),
            completed=sum(link.completed for link in self.links),
            dropped=c.dropped,
            errors=c.errors,
            malformed=c.malformed,
            bad_commands=c.bad_commands,
            commands=c.commands,
            reconnects=c.reconnects,
            connected=sum(1 for link in self.links if link.connected),
            links=len(self.links),
            elapsed_s=time.monotonic() - c.started,
        )

    def link_for(self, device_id: str) -> AnyLink:
        return self._link_of[device_id]

    def cut(self, device_id: str, offline_s: float) -> None:
        """Drop a device's connection abruptly for ``offline_s`` (its Last Will fires)."""
        self._link_of[device_id].cut(offline_s)

    def _maybe_cut(self, now: float) -> None:
        cfg = self.config.faults
        p = 0.1 / cfg.offline_every_s  # per tick of ~0.1 s: mean one cut per offline_every_s
        for link in self.links:
            if link.connected and self.faults.rng.random() < p:
                link.cut(cfg.offline_s)

    # --- the scheduler ---------------------------------------------------------------------------
    def _schedule(self) -> None:
        try:
            self._schedule_loop()
        except Exception:  # the scheduler's outermost loop: say why, end the run
            log.exception("event=scheduler_failed")
        finally:
            self.done.set()

    def _schedule_loop(self) -> None:
        cfg = self.config
        devices = list(self.devices.values())
        links = [self._link_of[d.device_id] for d in devices]
        clock, stop, counters = self.clock, self._stop, self.counters
        end_ms = clock.end_ms
        qos = cfg.telemetry_qos
        faults = self.faults if cfg.faults.any_on else None
        burst_every = cfg.faults.qos0_burst_every_s
        next_burst = time.monotonic() + burst_every if burst_every else None
        max_readings, deadline = self._max_readings, self._deadline
        version = [0] * len(devices)
        index = {d.device_id: i for i, d in enumerate(devices)}
        heap: list[tuple[int, int, int]] = [(d.next_due_ms(), i, 0) for i, d in enumerate(devices)]
        heapq.heapify(heap)
        for link in links:  # births first: readings wait for the first connect
            while not stop.is_set() and not link.first_connect.wait(0.2):
                pass
        wake = self._wake
        raw_links = [link for link in self.links if isinstance(link, RawLink)]
        while heap and not stop.is_set():
            while self._resched:  # a device's interval changed: its old entry goes stale
                i = index[self._resched.popleft()]
                version[i] += 1
                heapq.heappush(heap, (devices[i].next_due_ms(), i, version[i]))
            due, i, ver = heap[0]
            if ver != version[i]:
                heapq.heappop(heap)
                continue
            if end_ms is not None and due >= end_ms:
                break
            if raw_links and end_ms is None and clock.now_ms() < due:  # about to wait: flush
                for raw_link in raw_links:
                    raw_link.flush()
            if not clock.wait_until(due, wake):
                wake.clear()
                continue
            device = devices[i]
            readings = device.step(due)
            heapq.heapreplace(heap, (device.next_due_ms(), i, ver))
            if faults is not None:
                readings, bad, dup, reord = faults.apply(device.device_id, readings)
                counters.malformed += bad
                counters.duplicates += dup
                counters.reordered += reord
            link = links[i]
            for reading in readings:
                if link.connected and not link.wait_room(stop):
                    while not stop.is_set() and link.connected and not link.wait_room(stop):
                        pass
                if link.send_reading(
                    reading.topic, reading.payload, 1 if reading.is_event else qos
                ):
                    counters.readings += 1
                else:
                    counters.dropped += 1
            if next_burst is not None and time.monotonic() >= next_burst:
                next_burst = time.monotonic() + burst_every
                self._burst(device, link, due)
            if max_readings is not None and counters.readings >= max_readings:
                break
            if deadline is not None and time.monotonic() >= deadline:
                break
        for raw_link in raw_links:
            raw_link.flush()

    def _burst(self, device: Device, link: AnyLink, now_ms: int) -> None:
        """A QoS-0 burst: ``qos0_burst_size`` readings back to back, 1 ms apart in device time."""
        for k in range(self.config.faults.qos0_burst_size):
            with device.lock:
                reading = device._telemetry(now_ms + k, device.sample(now_ms))
            if link.send_reading(reading.topic, reading.payload, 0):
                self.counters.readings += 1
            else:
                self.counters.dropped += 1
