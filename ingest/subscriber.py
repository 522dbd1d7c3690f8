"""What ingest subscribes to and what it hands on: filters, :class:`Inbound`, retained births.

The MQTT session itself is :mod:`ingest.mqtt_consumer` (over ``mqttlink.session``);
the paho client this module used to hold was removed after measurement
(docs/architecture.md, "One MQTT session layer").
"""

from __future__ import annotations

import logging

from contract.codec import DecodeError, decode
from contract.topics import Channel, Topic, TopicError, shared, subscription
from ingest.batcher import Ack
from ingest.points import ModelCache
from ingest.settings import IngestSettings
from runtime.logs import kv

log = logging.getLogger("ingest.subscriber")
DATA_CHANNELS = (Channel.GATEWAY_BATCH, Channel.TELEMETRY, Channel.EVENT)
STATE_SUFFIX = "/" + Channel.STATE.value


Inbound = tuple[str, bytes, Ack | None]
"""One data message handed to the decode thread: ``(topic, payload, ack)`` (ack None:
QoS 0). A plain tuple: one is made per message (see :data:`ingest.batcher.Ack`)."""


def subscription_filters(settings: IngestSettings) -> list[str]:
    """The unshared ``state`` filter, then the shared data filters of the worker's group."""
    data = [shared(settings.share_group, subscription(ch)) for ch in DATA_CHANNELS]
    return [subscription(Channel.STATE), *data]


def parse_state(models: ModelCache, topic: str, payload: bytes) -> None:
    """A retained birth: remember the device's model (anything unusable is logged, ignored)."""
    try:
        where = Topic.parse(topic)
        state = decode(Channel.STATE, payload)
    except (TopicError, DecodeError) as exc:
        log.info(kv("state_ignored", topic=topic[:120], error=str(exc)[:200]))
        return
    models.learn(where.centre, where.device, state.model, state.kind)
