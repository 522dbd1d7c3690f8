"""What every simulated device shares: identity, sequence numbers, encoding, commands, twin.

A device is a model stepped by the fleet's scheduler (``step(now_ms)``) and fed
commands by its MQTT link (``on_command``/``on_twin``, called on the network
thread and handed to the command worker). A per-device lock keeps the two from
interleaving. What it sends goes through ``self.send`` which the link sets.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any, ClassVar, Final, NamedTuple

from contract.codec import encode
from contract.messages import Command, CommandAck, State, Twin, event, telemetry
from contract.metrics import DeviceKind, Metrics
from contract.topics import Channel, check_id, topic
from firmware_sim.environment import CentreEnv
from firmware_sim.seeding import derive_seed, stream

MIN_INTERVAL_S: Final = 1
MAX_INTERVAL_S: Final = 86_400
_UPSTREAM: Final = (
    Channel.TELEMETRY,
    Channel.EVENT,
    Channel.STATE,
    Channel.CMD_ACK,
    Channel.TWIN_REPORTED,
)
_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode

Send = Callable[[str, bytes, int, bool], None]
"""(topic, payload, qos, retain): how a device hands a message to its link."""


class Reading(NamedTuple):
    """An encoded reading ready to publish; ``seq`` and ``ts`` kept for faults and tests."""

    topic: str
    payload: bytes
    seq: int
    ts: int
    is_event: bool = False


_templates: dict[tuple[str, ...], bytes] = {}


def fast_metrics(metrics: dict[str, Any]) -> bytes:
    """JSON of a flat metrics dict, byte-identical to the compact json encoder's output.

    A ``%``-template per key set (cached) filled with ``repr`` of each number
    (what ``json`` writes for finite floats and ints) and ``true``/``false``;
    anything else (strings) goes through ``json``.
    """
    keys = tuple(metrics)
    template = _templates.get(keys)
    if template is None:
        if len(_templates) > 256:  # bounded: key sets are few (kinds x optional fields)
            _templates.clear()
        template = _templates[keys] = (
            "{" + ",".join(_dumps(k) + ":%s" for k in keys) + "}"
        ).encode()
    values = []
    for v in metrics.values():
        if v is True:
            values.append(b"true")
        elif v is False:
            values.append(b"false")
        elif type(v) is float or type(v) is int:
            values.append(repr(v).encode())
        else:
            values.append(_dumps(v).encode())
    return template % tuple(values)


def _drop_send(topic_: str, payload: bytes, qos: int, retain: bool) -> None:
    """Until a link attaches, messages from commands go nowhere."""


class Device:
    """Base of every simulated device kind."""

    kind: ClassVar[DeviceKind]
    abbr: ClassVar[str]
    model: ClassVar[str]
    metrics_model: ClassVar[type[Metrics]]
    default_interval_s: ClassVar[int] = 60

    def __init__(
        self,
        centre: str,
        device_id: str,
        env: CentreEnv,
        seed: int,
        start_ms: int,
        *,
        fw: str = "1.0.0",
        validate: bool = True,
        interval_s: int | None = None,
    ) -> None:
        self.centre = check_id(centre, "centre")
        self.device_id = check_id(device_id, "device")
        self.env = env
        self.seed = seed
        self.rng = stream(seed, device_id)
        self.fw = fw
        # the device's own login, also for firmware downloads (HTTP Basic); None: anonymous
        self.http_auth: tuple[str, str] | None = None
        self.validate = validate
        self.seq = 0
        self.skew_ms = 0
        self.boot_ms = start_ms
        self.last_ms = start_ms
        self.interval_ms = int((interval_s or self.default_interval_s) * 1000)
        # spread the fleet's first readings over one interval, deterministically
        self.next_telemetry_ms = start_ms + derive_seed(seed, device_id, "phase") % self.interval_ms
        self.twin_version = 0
        self.identify_until_ms = 0
        # [start, end) spans of device time when the device sends nothing though its model
        # runs on (a hung sensor that stays connected): what the absence rule is for
        self.muted: list[tuple[int, int]] = []
        self.lock = threading.RLock()
        self.send: Send = _drop_send
        self.on_reschedule: Callable[[str], None] = lambda device_id: None
        # set by a per-device link: a reboot drops and re-establishes the MQTT connection
        self.restart_link: Callable[[], None] | None = None
        self.topics = {ch: topic(centre, device_id, ch) for ch in _UPSTREAM}
        self.cmd_topic = topic(centre, device_id, Channel.CMD)
        self.twin_topic = topic(centre, device_id, Channel.TWIN_DESIRED)
        self._t_head = b'{"v":1,"kind":"%s","ts":' % self.kind.value.encode()

    # --- what subclasses provide -------------------------------------------------------------
    def advance(
        self, now_ms: int
    ) -> list[tuple[int, str, dict[str, Any] | None, dict[str, Any] | None]]:
        """Move the model to ``now_ms``; return events as (ts, name, metrics, detail)."""
        return []

    def sample(self, now_ms: int) -> dict[str, Any]:
        """The telemetry metrics at ``now_ms`` (after ``advance``)."""
        raise NotImplementedError

    def next_event_ms(self) -> int | None:
        """When the model next has an event due on its own (None: only telemetry)."""
        return None

    def on_reboot(self, now_ms: int) -> None:
        """Reset what a reboot resets (counters, uptime)."""

    # --- scheduling ----------------------------------------------------------------------------
    def next_due_ms(self) -> int:
        nxt = self.next_event_ms()
        return self.next_telemetry_ms if nxt is None else min(nxt, self.next_telemetry_ms)

    def step(self, now_ms: int) -> list[Reading]:
        """Readings due by ``now_ms``: the model's events, then telemetry if its time came."""
        out: list[Reading] = []
        with self.lock:
            events = self.advance(now_ms)
            muted = bool(self.muted) and any(a <= now_ms < b for a, b in self.muted)
            if not muted:
                for ts, name, metrics, detail in events:
                    out.append(self._event(ts, name, metrics, detail))
            if now_ms >= self.next_telemetry_ms:
                if not muted:
                    out.append(self._telemetry(now_ms, self.sample(now_ms)))
                self.next_telemetry_ms += self.interval_ms
                if self.next_telemetry_ms <= now_ms:  # far behind (paused): skip, don't burst
                    self.next_telemetry_ms = now_ms + self.interval_ms
            self.last_ms = now_ms
        return out

    # --- encoding ------------------------------------------------------------------------------
    def _next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def _telemetry(self, now_ms: int, metrics: dict[str, Any]) -> Reading:
        seq = self._next_seq()
        ts = now_ms + self.skew_ms
        if self.validate:
            payload = encode(
                telemetry(self.kind, ts=ts, seq=seq, metrics=self.metrics_model(**metrics))
            )
        else:  # load mode: same bytes shape, no pydantic round trip (tests prove equivalence)
            payload = b'%s%d,"seq":%d,"metrics":%s}' % (
                self._t_head,
                ts,
                seq,
                fast_metrics(metrics),
            )
        return Reading(self.topics[Channel.TELEMETRY], payload, seq, ts)

    def _event(
        self,
        ts_ms: int,
        name: str,
        metrics: dict[str, Any] | None,
        detail: dict[str, Any] | None,
    ) -> Reading:
        seq = self._next_seq()
        ts = ts_ms + self.skew_ms
        model = self.metrics_model(**metrics) if metrics is not None else None
        payload = encode(event(self.kind, ts=ts, seq=seq, name=name, metrics=model, detail=detail))
        return Reading(self.topics[Channel.EVENT], payload, seq, ts, is_event=True)

    def birth(self, now_ms: int) -> bytes:
        return encode(
            State(online=True, kind=self.kind.value, model=self.model, fw=self.fw, ts=now_ms)
        )

    @staticmethod
    def will() -> bytes:
        return encode(State(online=False))

    # --- commands and twin (called on the command worker) --------------------------------------
    def ack(
        self, cmd_id: str, status: str, detail: str | None = None, pct: float | None = None
    ) -> None:
        message = CommandAck(id=cmd_id, status=status, detail=detail, progress_pct=pct)  # type: ignore[arg-type]
        self.send(self.topics[Channel.CMD_ACK], encode(message), 1, False)

    def publish_event(self, now_ms: int, name: str, detail: dict[str, Any] | None = None) -> None:
        with self.lock:
            reading = self._event(now_ms, name, None, detail)
        self.send(reading.topic, reading.payload, 1, False)

    def rebirth(self, now_ms: int) -> None:
        self.send(self.topics[Channel.STATE], self.birth(now_ms), 1, True)

    def run_command(self, cmd: Command, now_ms: int) -> None:
        """Execute one (unexpired) command and acknowledge it; OTA is handled by the worker."""
        handler = getattr(self, f"_cmd_{cmd.name}", None)
        if handler is None:
            self.ack(cmd.id, "failed", f"unknown command {cmd.name}")
            return
        handler(cmd, now_ms)

    def _cmd_reboot(self, cmd: Command, now_ms: int) -> None:
        self.ack(cmd.id, "accepted")
        with self.lock:
            self.boot_ms = now_ms
            self.on_reboot(now_ms)
        if self.restart_link is not None:
            self.restart_link()  # own connection: down now, birth again on the reconnect
        else:
            self.rebirth(now_ms)  # a centre's shared connection stays up
        self.publish_event(now_ms, "reboot", {"reason": "command"})
        self.ack(cmd.id, "done")

    def _cmd_set_interval(self, cmd: Command, now_ms: int) -> None:
        value = cmd.args.get("interval_s")
        if not isinstance(value, int | float) or isinstance(value, bool):
            self.ack(cmd.id, "failed", "interval_s must be a number")
            return
        if not MIN_INTERVAL_S <= value <= MAX_INTERVAL_S:
            self.ack(cmd.id, "failed", f"interval_s must be {MIN_INTERVAL_S}..{MAX_INTERVAL_S}")
            return
        self.set_interval(value, now_ms)
        self.ack(cmd.id, "done", f"interval_s={value:g}")

    def _cmd_identify(self, cmd: Command, now_ms: int) -> None:
        seconds = cmd.args.get("duration_s", 10)
        if not isinstance(seconds, int | float) or isinstance(seconds, bool) or seconds <= 0:
            self.ack(cmd.id, "failed", "duration_s must be a positive number")
            return
        self.identify_until_ms = now_ms + int(seconds * 1000)
        self.publish_event(now_ms, "identify", {"duration_s": float(seconds)})
        self.ack(cmd.id, "done", f"blinking for {seconds:g} s")

    def set_interval(self, seconds: float, now_ms: int) -> None:
        with self.lock:
            self.interval_ms = int(seconds * 1000)
            self.next_telemetry_ms = now_ms + self.interval_ms
        self.on_reschedule(self.device_id)

    def apply_twin(self, desired: Twin, now_ms: int) -> None:
        """Apply the settings this device knows, then report what it holds."""
        applied: dict[str, Any] = {}
        value = desired.config.get("interval_s")
        if (
            isinstance(value, int | float)
            and not isinstance(value, bool)
            and MIN_INTERVAL_S <= value <= MAX_INTERVAL_S
        ):
            self.set_interval(value, now_ms)
        applied["interval_s"] = (
            self.interval_ms // 1000 if self.interval_ms % 1000 == 0 else self.interval_ms / 1000
        )
        for key, val in desired.config.items():
            if key != "interval_s":
                applied[key] = val  # held as given: the device stores settings it does not use
        self.twin_version = desired.version
        reported = Twin(version=desired.version, config=applied)
        self.send(self.topics[Channel.TWIN_REPORTED], encode(reported), 1, True)
