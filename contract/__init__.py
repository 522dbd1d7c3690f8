"""The GramLink wire contract: topics, messages, metrics, codecs.

Every other package imports this one and never each other. Anything that crosses
an MQTT connection is defined here once.
"""

from contract.codec import (
    MAX_BATCH_BYTES,
    MAX_MESSAGE_BYTES,
    DecodeError,
    DecodeReason,
    decode,
    decode_batch,
    decode_record,
    encode,
    encode_batch,
)
from contract.messages import (
    Batch,
    BatchRecord,
    Command,
    CommandAck,
    CommandStatus,
    Event,
    State,
    Telemetry,
    Twin,
)
from contract.metrics import METRICS_BY_KIND, DeviceKind, Measurement, measurement_for
from contract.topics import Channel, Topic, TopicError

__all__ = [
    "MAX_BATCH_BYTES",
    "MAX_MESSAGE_BYTES",
    "METRICS_BY_KIND",
    "Batch",
    "BatchRecord",
    "Channel",
    "Command",
    "CommandAck",
    "CommandStatus",
    "DecodeError",
    "DecodeReason",
    "DeviceKind",
    "Event",
    "Measurement",
    "State",
    "Telemetry",
    "Topic",
    "TopicError",
    "Twin",
    "decode",
    "decode_batch",
    "decode_record",
    "encode",
    "encode_batch",
    "measurement_for",
]
