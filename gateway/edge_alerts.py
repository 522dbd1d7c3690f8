"""Alerts raised at the centre: each accepted reading through the edge rules, at once.

:meth:`EdgeAlerter.observe` runs on the ingest thread with the rows about to be
stored. For each telemetry or event row (the scrubbed payload: ``patient_ref``,
never ``patient_id``) it builds the :class:`alerting.evaluation.Reading` the
central engine builds from the same record: at the stored time (the receive
time of a clock-suspect reading) with the device's own ``ts`` kept for the
alert id. Every change :class:`gateway.edge_rules.EdgeRules` reports that
opens or closes an alert becomes a :class:`contract.edge.EdgeAlert`:

- published at once on the local broker, retained, on
  ``gl/v1/{centre}/{gateway}/_gateway/alert/{alert_id}`` (a connection of its
  own, ``{gateway}-alerts``: its PUBACKs are nobody else's business);
- handed to the local outlets (:mod:`gateway.edge_outlets`);
- firing only: returned as an outbox row in the priority lane, stored in the
  same transaction as the reading, so central hears of it with the next uplink
  batch, ahead of any backlog.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from alerting.evaluation import Reading
from contract.codec import DecodeError, decode
from contract.edge import ALERT_CHANNEL, RESOLVED_RETAIN_S, EdgeAlert, alert_local_topic
from contract.metrics import DeviceKind
from contract.topics import Channel
from gateway.edge_outlets import Outlets
from gateway.edge_rules import EdgeRules, Raised
from gateway.outbox import CLOCK_SUSPECT, PRIORITY, NewRow
from mqttlink.paho_link import MqttLink
from runtime.logs import kv

log = logging.getLogger(__name__)
READINGS = frozenset({Channel.TELEMETRY.value, Channel.EVENT.value})
ANNOUNCED = ("firing", "resolved")


class EdgeAlerter:
    def __init__(
        self,
        centre: str,
        gateway_id: str,
        rules: EdgeRules,
        outlets: Outlets,
        now_ms: Callable[[], int],
    ) -> None:
        self.centre = centre
        self.gateway_id = gateway_id
        self.rules = rules
        self.outlets = outlets
        self.now_ms = now_ms
        self.local: MqttLink | None = None
        self.raised_total = 0
        self.resolved_total = 0

    def attach(self, local: MqttLink) -> None:
        self.local = local

    def observe(self, rows: list[NewRow]) -> list[NewRow]:
        """Evaluate the readings among ``rows``; the priority rows of the alerts raised."""
        out: list[NewRow] = []
        if not self.rules.kinds:
            return out  # no edge rules (yet): nothing to decode
        for row in rows:
            if row.channel not in READINGS:
                continue
            reading = self.reading_of(row)
            if reading is None:
                continue
            for raised in self.rules.evaluate(reading):
                if raised.change.what in ANNOUNCED:
                    out += self._announce(raised)
        return out

    def reading_of(self, row: NewRow) -> Reading | None:
        try:
            message: Any = decode(Channel(row.channel), row.payload)
        except DecodeError:  # pragma: no cover - the row was encoded from a valid message
            return None
        if message.metrics is None or str(message.kind) not in self.rules.kinds:
            return None  # no metrics (a reboot event), or a kind no edge rule looks at
        metrics = message.metrics.model_dump(exclude_none=True)
        ref = metrics.get("patient_ref")
        suspect = bool(row.flags & CLOCK_SUSPECT)
        return Reading(
            centre=self.centre,
            device=row.device,
            kind=str(message.kind),
            ts_ms=row.rx_ms if suspect else int(message.ts),
            seq=int(message.seq),
            metrics=metrics,
            patient_ref=ref if isinstance(ref, str) else None,
            device_ts_ms=int(message.ts) if suspect else None,
        )

    def _announce(self, raised: Raised) -> list[NewRow]:
        rule, change, r = raised.rule, raised.change, raised.reading
        value = change.value
        alert = EdgeAlert(
            alert_id=change.alert_id,
            state="firing" if change.what == "firing" else "resolved",
            rule_id=rule.id,
            rule_version=rule.version,
            rule_name=rule.name,
            severity=rule.severity.value,
            clinical=rule.clinical,
            centre=r.centre,
            device=r.device,
            kind=DeviceKind(r.kind),
            subject=change.subject,
            ts=r.ts_ms,
            device_ts=r.id_ts_ms,
            seq=r.seq,
            started_ms=change.started_ms,
            raised_ms=self.now_ms(),
            value=value if isinstance(value, bool | int | float) else None,
            metric=change.detail.get("metric"),
            patient_ref=r.patient_ref,
        )
        payload = alert.model_dump_json(exclude_none=True).encode()
        self._publish_local(alert, payload)
        self.outlets.submit(alert)
        log.warning(
            kv(
                "edge_alert",
                centre=self.centre,
                alert=alert.alert_id,
                state=alert.state,
                rule=rule.id,
                device=r.device,
                value=alert.value,
            )
        )
        if alert.state == "resolved":
            self.resolved_total += 1
            return []
        self.raised_total += 1
        return [NewRow(PRIORITY, self.gateway_id, ALERT_CHANNEL, payload, alert.raised_ms)]

    def _publish_local(self, alert: EdgeAlert, payload: bytes) -> None:
        if self.local is None:
            return
        props: Properties | None = None
        if alert.state == "resolved":
            props = Properties(PacketTypes.PUBLISH)
            props.MessageExpiryInterval = RESOLVED_RETAIN_S
        topic = alert_local_topic(self.centre, self.gateway_id, alert.alert_id)
        self.local.publish(topic, payload, retain=True, properties=props)
