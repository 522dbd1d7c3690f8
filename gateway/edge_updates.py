"""Edge rule updates from the API: kept on disk, then acknowledged.

A :class:`gateway.downlink.Downlink` route on ``gl/v1/{centre}/{gateway}/_gateway/rules``
(the gateway's persistent central session, so an update published while the
gateway was offline arrives when it reconnects). :meth:`RuleUpdates.on_message`
runs on the central link's network thread: one small SQLite transaction
(:meth:`gateway.edge_rules.EdgeRules.replace`), then the central message is
acknowledged (paho ``manual_ack``) and an :class:`contract.edge.EdgeRulesAck` is
published on ``.../rules/ack`` (QoS 1: the API shows per gateway which set it
holds). An update older than the set held (a redelivery) is acknowledged ``ok``
and changes nothing; a malformed one is acknowledged ``ok: false`` with the error
and its ``seq`` when it names one (0 when not), so the API shows it rejected
(permanent: it never blocks the next one); one the
database did not take is logged and left unacknowledged (the central broker
sends it again after the next reconnect).
"""

from __future__ import annotations

import json
import logging

import paho.mqtt.client as mqtt

from contract.codec import DecodeError
from contract.edge import MAX_RULES_BYTES, EdgeRulesAck, decode_rules, rules_ack_topic
from contract.messages import MAX_SEQ
from gateway.edge_rules import EdgeRules
from gateway.errors import StoreError
from mqttlink.paho_link import MqttLink
from runtime.logs import kv

log = logging.getLogger(__name__)


class RuleUpdates:
    def __init__(self, centre: str, gateway_id: str, rules: EdgeRules) -> None:
        self.centre = centre
        self.gateway_id = gateway_id
        self.rules = rules
        self.central: MqttLink | None = None
        self.applied = 0
        self.stale = 0
        self.rejected = 0
        self.failed = 0  # not stored (the disk): left unacknowledged

    def attach(self, central: MqttLink) -> None:
        self.central = central

    def on_message(self, msg: mqtt.MQTTMessage, generation: int) -> None:
        assert self.central is not None
        try:
            update = decode_rules(bytes(msg.payload))
        except DecodeError as exc:
            self.rejected += 1
            log.error(kv("edge_rules_rejected", centre=self.centre, error=exc))
            self.central.ack(msg.mid, generation)
            self._answer(
                EdgeRulesAck(seq=_seq_of(bytes(msg.payload)), ok=False, error=str(exc)[:256])
            )
            return
        try:
            kept = self.rules.replace(update)
        except StoreError as exc:  # not acknowledged: the broker sends it again after a reconnect
            self.failed += 1
            log.error(kv("edge_rules_not_stored", centre=self.centre, seq=update.seq, error=exc))
            return
        self.central.ack(msg.mid, generation)
        if kept:
            self.applied += 1
        else:
            self.stale += 1
        held = len(self.rules.rules)
        log.info(
            kv(
                "edge_rules",
                centre=self.centre,
                seq=update.seq,
                kept=kept,
                rules=held,
                invalid=self.rules.invalid,
            )
        )
        self._answer(EdgeRulesAck(seq=update.seq, ok=True, rules=held))

    def _answer(self, ack: EdgeRulesAck) -> None:
        assert self.central is not None
        topic = rules_ack_topic(self.centre, self.gateway_id)
        self.central.publish(topic, ack.model_dump_json().encode())


def _seq_of(payload: bytes) -> int:
    """The ``seq`` a malformed update names (0: none that could be an update's)."""
    if len(payload) > MAX_RULES_BYTES:
        return 0
    try:
        value = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        return 0
    seq = value.get("seq") if isinstance(value, dict) else None
    return seq if type(seq) is int and 0 <= seq <= MAX_SEQ else 0
