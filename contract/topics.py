"""Topics of the form ``gl/v1/{centre}/{device}/{channel}``.

A :class:`Topic` is an immutable, validated value. Ids are lower-case letters,
digits and dashes (``[a-z0-9][a-z0-9-]{0,31}``), so no id can carry an MQTT
wildcard (``+``, ``#``), a level separator (``/``) or a ``$`` prefix.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

PREFIX: Final = "gl/v1"
ID_RE: Final = re.compile(r"[a-z0-9][a-z0-9-]{0,31}")


class TopicError(ValueError):
    """A topic or an id that does not follow the contract (permanent)."""


class Channel(StrEnum):
    TELEMETRY = "telemetry"
    EVENT = "event"
    STATE = "state"
    CMD = "cmd"
    CMD_ACK = "cmd/ack"
    TWIN_DESIRED = "twin/desired"
    TWIN_REPORTED = "twin/reported"
    GATEWAY_BATCH = "_gateway/batch"

    @property
    def upstream(self) -> bool:
        """True for channels a device (or gateway) publishes towards the centre."""
        return self not in (Channel.CMD, Channel.TWIN_DESIRED)


_CHANNELS: Final = {c.value: c for c in Channel}


def check_id(value: str, what: str = "id") -> str:
    """Return ``value`` if it is a valid centre/device id, else raise TopicError."""
    if not isinstance(value, str) or ID_RE.fullmatch(value) is None:
        raise TopicError(f"invalid {what} {value!r}: must match {ID_RE.pattern}")
    return value


@dataclass(frozen=True, slots=True)
class Topic:
    centre: str
    device: str
    channel: Channel

    def __post_init__(self) -> None:
        check_id(self.centre, "centre")
        check_id(self.device, "device")
        if not isinstance(self.channel, Channel):
            raise TopicError(f"invalid channel {self.channel!r}")

    def __str__(self) -> str:
        return f"{PREFIX}/{self.centre}/{self.device}/{self.channel.value}"

    @classmethod
    def parse(cls, topic: str) -> Topic:
        parts = topic.split("/", 4)
        if len(parts) != 5 or f"{parts[0]}/{parts[1]}" != PREFIX:
            raise TopicError(f"not a gl/v1 topic: {topic[:120]!r}")
        channel = _CHANNELS.get(parts[4])
        if channel is None:
            raise TopicError(f"unknown channel {parts[4][:40]!r}")
        return cls(parts[2], parts[3], channel)


def topic(centre: str, device: str, channel: Channel) -> str:
    """Build a topic string; raises TopicError for an invalid id."""
    return str(Topic(centre, device, channel))


def subscription(channel: Channel, centre: str | None = None, device: str | None = None) -> str:
    """A subscription filter; ``None`` for centre or device means every one (``+``)."""
    c = "+" if centre is None else check_id(centre, "centre")
    d = "+" if device is None else check_id(device, "device")
    return f"{PREFIX}/{c}/{d}/{channel.value}"


def centre_subtree(centre: str) -> str:
    """The filter covering everything of one centre: ``gl/v1/{centre}/#``."""
    return f"{PREFIX}/{check_id(centre, 'centre')}/#"


def shared(group: str, filter_: str) -> str:
    """An MQTT v5 shared subscription filter, e.g. ``$share/ingest/gl/v1/+/+/telemetry``."""
    check_id(group, "share group")
    return f"$share/{group}/{filter_}"
