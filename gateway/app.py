"""Composition root of the gateway: ``run(settings)`` builds, starts, watches, stops.

Threads: ``mqtt-local`` and ``mqtt-uplink`` (paho network loops, reconnect
owned by :class:`MqttLink`), ``ingest`` (local messages to the outbox),
``uplink`` (outbox to the central broker), and the caller's thread, which runs
the watchdog and the health reading. With a centre key (local enforcement on)
also ``mqtt-local-admin`` (the gateway's dynsec admin connection to the local
broker, apart from the relay connection so the plugin's answers and PUBACKs
never mix with relayed messages) and ``dynsec`` (credential updates applied).

Exit codes of :meth:`Gateway.run_until` (:class:`runtime.exits.ExitCode`): 0
stopped on request; 1 a worker failed (e.g. the store); 3 the local broker
stayed down past ``local_down_exit_s`` (systemd restarts us); 4 a broker refused
our login, client id or a subscription for good; 5 another process took over our
session (same client id). Each stop for a broker's reason logs one line
(``event=broker_refused`` / ``event=local_broker_down``) naming the cause and
the setting to fix. An uplink that stays down, or whose broker certificate is
not signed by ``GRAMLINK_GATEWAY_UPLINK_CA_FILE``, is only logged (every
``uplink_down_warn_s``, certificate errors once a minute): the outbox keeps
storing, so the gateway keeps running.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from types import FrameType
from typing import Any, Literal

import paho.mqtt.client as mqtt
from paho.mqtt.properties import Properties

from contract.edge import rules_topic
from contract.provisioning import dynsec_topic
from contract.receipts import receipt_topic
from gateway.autonomy import InflowMeter
from gateway.centre_devices import CentreDevices
from gateway.clock import GatewayClock
from gateway.clock_sanity import ClockSanity
from gateway.device_models import DeviceModels
from gateway.downlink import Downlink
from gateway.dynsec_seqs import AppliedSeqs
from gateway.edge_alerts import EdgeAlerter
from gateway.edge_outlets import OutletOptions, Outlets
from gateway.edge_rules import EdgeRules
from gateway.edge_updates import RuleUpdates
from gateway.firmware_cache import FirmwareCache
from gateway.firmware_server import FirmwareServer
from gateway.health import HealthReporter
from gateway.local_auth import LocalAuth
from gateway.local_enforcement import DynsecWorker
from gateway.local_in import LocalIn
from gateway.ota_rewrite import OtaRewrite
from gateway.outbox import Outbox
from gateway.pseudonymize import Transformer
from gateway.quarantine import Quarantine
from gateway.settings import GatewaySettings, env_name
from gateway.uplink import Uplink, UplinkOptions, gateway_state, state_topic
from mqttlink.paho_link import LinkOptions, MqttLink, Will
from runtime.backoff import Backoff
from runtime.exits import ExitCode
from runtime.logs import kv

log = logging.getLogger(__name__)


def _secret(value: object) -> str | None:
    return None if value is None else value.get_secret_value()  # type: ignore[attr-defined]


class Gateway:
    """One centre's gateway, built from settings; usable in-process by tests."""

    def __init__(self, settings: GatewaySettings) -> None:
        s = settings
        self.settings = s
        self.ctx = {"centre": s.centre, "gw": s.gateway_id}
        self.clock = GatewayClock(int(s.clock_jump_s * 1000), s.clock_offset_file)
        self.outbox = Outbox(s.db_path, s.disk_budget_bytes, s.sqlite_synchronous)
        self.quarantine = Quarantine(s.db_path, s.quarantine_max_rows)
        key = s.centre_key_bytes
        # The centre's devices and kinds, learnt from credential updates (local enforcement).
        self.devices = CentreDevices(s.db_path, s.gateway_id) if key is not None else None
        self.sanity = ClockSanity(
            self.clock,
            self.outbox.first_run_ms(self.clock.now_ms()),
            int(s.clock_ahead_s * 1000),
            self.devices,
        )
        # Each device's model, stamped into its envelope records (registry, else births).
        self.models = DeviceModels(s.db_path, s.gateway_id, self.devices)
        transformer = Transformer(
            s.centre,
            s.pseudonym_key.get_secret_value().encode(),
            self.devices,
            self.models,
            self.sanity,
        )
        self.downlink = Downlink(
            s.centre, now_ms=lambda: self.clock.now_ms() if self.clock.synced() else None
        )
        # Alerts raised at the centre: the API's edge rules, evaluated on every reading.
        self.edge_rules = EdgeRules(s.db_path, s.gateway_id)
        self.outlets = Outlets(
            OutletOptions(
                command=s.alert_command,
                sms_numbers=s.sms_numbers,
                sms_config=s.alert_sms_config,
                sms_inject=s.alert_sms_inject,
                timeout_s=s.alert_outlet_timeout_s,
            )
        )
        self.alerter = EdgeAlerter(
            s.centre, s.gateway_id, self.edge_rules, self.outlets, self.clock.now_ms
        )
        self.rule_updates = RuleUpdates(s.centre, s.gateway_id, self.edge_rules)
        self.local_in = LocalIn(
            s.centre,
            self.outbox,
            self.quarantine,
            transformer,
            queue_size=s.ingest_queue,
            commit_window_ms=s.commit_window_ms,
            on_stored=lambda: self.uplink.wake(),
            clock=self.clock,
            own_device=s.gateway_id,
            alerter=self.alerter,
        )
        self.local = MqttLink(
            self._link_options("local", "local", f"{s.gateway_id}-local", manual_ack=True),
            on_connect=self.local_in.on_connect,
            on_message=self.local_in.on_message,
            on_publish=self.downlink.on_local_puback,
        )
        self.central = MqttLink(
            self._link_options(
                "uplink",
                "uplink",
                s.gateway_id,
                manual_ack=True,
                receive_maximum=s.dynsec_queue,
                # a poor uplink drops young connections by itself: only the broker's
                # own DISCONNECT 0x8E (Mosquitto >= 2.0.15) stops the gateway as taken over
                guessed_takeover_stops=False,
                will=Will(
                    state_topic(s.centre, s.gateway_id), gateway_state(False, ""), s.will_delay_s
                ),
            ),
            on_connect=self._on_central_connect,
            on_message=self.downlink.on_message,
            on_publish=lambda mid, code: self.uplink.on_puback(mid, code),
        )
        self.uplink = Uplink(
            UplinkOptions(
                centre=s.centre,
                gateway_id=s.gateway_id,
                batch_max_records=s.batch_max_records,
                batch_max_bytes=s.batch_max_bytes,
                batch_max_age_ms=s.batch_max_age_ms,
                max_inflight=s.uplink_max_inflight,
                live_share=s.live_share,
                backoff_min_s=s.backoff_min_s,
                backoff_max_s=s.backoff_max_s,
                receipt_timeout_s=s.receipt_timeout_s,
                max_bytes_per_s=s.uplink_max_bytes_per_s,
            ),
            self.outbox,
            self.central,
            self.models.model_of,
        )
        # The local announcements of edge alerts: a connection of their own (its PUBACKs).
        self.local_alerts = MqttLink(
            self._link_options("local", "local-alerts", f"{s.gateway_id}-alerts")
        )
        self.alerter.attach(self.local_alerts)
        self.rule_updates.attach(self.central)
        self.local_in.attach(self.local)
        self.downlink.attach(self.local, self.central)
        self.downlink.add_route(rules_topic(s.centre, s.gateway_id), self.rule_updates.on_message)
        # Storage receipts from ingest, on our own topic (subscribed again on every connect).
        self.downlink.add_route(receipt_topic(s.centre, s.gateway_id), self._on_receipt)
        self.seqs: AppliedSeqs | None = None
        self.admin: MqttLink | None = None
        self.dynsec: DynsecWorker | None = None
        if key is not None:
            self._build_local_enforcement(key)
        self.firmware: FirmwareServer | None = None
        if s.firmware_port:
            self._build_firmware_cache()
        self.health = HealthReporter(
            s.gateway_id, self.outbox, s.data_dir, self.clock, InflowMeter(s.autonomy_window_s)
        )
        self.stop_requested = threading.Event()
        self._started = False

    def _link_options(
        self, side: Literal["local", "uplink"], name: str, client_id: str, **extra: Any
    ) -> LinkOptions:
        """A link to the centre's broker (``local``) or the central one (``uplink``)."""
        s = self.settings
        options: dict[str, Any] = {
            "keepalive_s": s.keepalive_s,
            "session_expiry_s": s.session_expiry_s,
            "backoff_min_s": s.backoff_min_s,
            "backoff_max_s": s.backoff_max_s,
            "context": self.ctx,
            **extra,
        }
        return LinkOptions(
            name=name,
            endpoint=s.local if side == "local" else s.uplink,
            client_id=client_id,
            names=s.setting_names(side),
            tls=s.tls_files(side),
            username=s.local_username if side == "local" else s.uplink_username,
            password=_secret(s.local_password if side == "local" else s.uplink_password),
            **options,
        )

    def _build_local_enforcement(self, key: bytes) -> None:
        s = self.settings
        self.admin = MqttLink(
            self._link_options(
                "local", "local-admin", f"{s.gateway_id}-dynsec", session_expiry_s=0
            ),
            on_connect=lambda client, props: self._on_admin_connect(client, props),
        )
        self.seqs = AppliedSeqs(s.db_path, s.gateway_id)
        auth = LocalAuth(
            self.admin.client,
            s.centre,
            key,
            timeout=s.dynsec_timeout_s,
            seqs=self.seqs,
            devices=self.devices,
        )
        self.dynsec = DynsecWorker(
            auth,
            local=self.admin,
            central=self.central,
            quarantine=self.quarantine,
            centre=s.centre,
            gateway_id=s.gateway_id,
            queue_size=s.dynsec_queue,
            backoff=lambda: Backoff(s.backoff_min_s, s.backoff_max_s),
        )
        self.downlink.add_route(dynsec_topic(s.centre, s.gateway_id), self.dynsec.on_message)

    def _build_firmware_cache(self) -> None:
        s = self.settings
        login = None
        if s.uplink_username is not None and s.uplink_password is not None:
            login = (s.uplink_username, s.uplink_password.get_secret_value())
        cache = FirmwareCache(
            s.data_dir / "firmware", s.firmware_cache_bytes, login, s.firmware_timeout_s
        )
        self.firmware = FirmwareServer(cache, s.firmware_host, s.firmware_port)
        self.downlink.rewrite = OtaRewrite(cache, s.firmware_local_url)

    def _on_admin_connect(self, client: mqtt.Client, props: Properties | None) -> None:
        if self.dynsec is not None:
            self.dynsec.on_local_connect(client, props)

    def _on_receipt(self, msg: mqtt.MQTTMessage, generation: int) -> None:
        self.uplink.on_receipt(bytes(msg.payload))
        self.central.ack(msg.mid, generation)  # lost before it is applied: the batch is resent

    def _on_central_connect(self, client: mqtt.Client, props: Properties | None) -> None:
        # Subscribe before the birth message: the API answers a gateway's birth by
        # re-sending its centre's credentials, which must find the subscription.
        self.downlink.on_connect(client, props)
        self.uplink.on_connect(client, props)

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        self.outlets.start()
        self.local_alerts.start()
        self.local_in.start()
        self.uplink.start()
        if self.dynsec is not None and self.admin is not None:
            self.dynsec.start()
            self.admin.start()
            log.info(
                kv(
                    "local_auth_on",
                    topic=dynsec_topic(self.settings.centre, self.settings.gateway_id),
                    **self.ctx,
                )
            )
        else:
            log.warning(
                kv(
                    "local_auth_off",
                    reason="GRAMLINK_GATEWAY_CENTRE_KEY not set",
                    effect="the local broker does not learn credential changes from the API",
                    **self.ctx,
                )
            )
        if self.firmware is not None:
            self.firmware.start()
        self.central.start()
        self.local.start()
        self._started = True
        log.info(
            kv(
                "gateway_started",
                local=self.settings.local,
                uplink=self.settings.uplink,
                queued=self.outbox.stats().depth,
                **self.ctx,
            )
        )

    def stop(self) -> None:
        """Stop in reverse order; unstored local messages stay unacknowledged (redelivered)."""
        if not self._started:
            self._close_stores()
            return
        self._started = False
        self.local.disconnect()
        self.local_in.stop()
        self.outlets.stop()
        self.local_alerts.disconnect()
        if self.dynsec is not None:
            self.dynsec.stop()
        self.uplink.stop()
        if self.firmware is not None:
            self.firmware.stop()
        self.uplink.say_offline()
        self.central.disconnect()
        if self.admin is not None:
            self.admin.disconnect()
        self._close_stores()
        log.info(kv("gateway_stopped", **self.ctx))

    def _close_stores(self) -> None:
        self.outbox.close()
        self.edge_rules.close()
        self.models.close()
        self.quarantine.close()
        if self.seqs is not None:
            self.seqs.close()
        if self.devices is not None:
            self.devices.close()

    def report_health(self) -> None:
        reading, stats = self.health.reading(self.central.connected.is_set())
        self.local_in.submit_own(reading)
        oldest = stats.unreceipted_oldest_s
        log.info(
            kv(
                "outbox",
                queued=stats.depth,
                ready=stats.ready,
                unreceipted=stats.unreceipted,
                unreceipted_oldest_s="" if oldest is None else f"{oldest:.0f}",
                rejected_total=stats.rejected_total,
                dropped_total=stats.dropped_total,
                clock_suspect_total=stats.clock_suspect_total,
                uplink_up=self.central.connected.is_set(),
                **self.ctx,
            )
        )

    # -- watchdog ----------------------------------------------------------------------------
    def check(self) -> int | None:
        """One watchdog pass: an exit code if the process must end, else None."""
        s = self.settings
        workers: list[LocalIn | Uplink | DynsecWorker] = [self.local_in, self.uplink]
        links = [self.local, self.central, self.local_alerts]
        if self.dynsec is not None and self.admin is not None:
            workers.append(self.dynsec)
            links.append(self.admin)
        for worker in workers:
            if worker.failure is not None or not worker.alive:
                log.error(kv("worker_died", worker=type(worker).__name__, **self.ctx))
                return ExitCode.INTERNAL
        for link in links:
            if link.failure is not None:
                log.error(kv("worker_died", worker=f"{link.options.name} link", **self.ctx))
                return ExitCode.INTERNAL
            if link.refusal is not None:
                hint = {}
                username = link.options.username or ""
                if link is self.central and "/" not in username:
                    hint["hint"] = "provisioned logins are {centre}/{gateway}"
                log.error(
                    kv(
                        "broker_refused",
                        link=link.options.name,
                        reason=link.refusal.reason,
                        detail=link.refusal.line,
                        **hint,
                        **self.ctx,
                    )
                )
                return link.refusal.exit_code
        if self.local.down_for() > s.local_down_exit_s:
            log.error(
                kv(
                    "local_broker_down",
                    url=self.local.url,
                    down_s=f"{self.local.down_for():.0f}",
                    last_error=self.local.last_failure or "",
                    action="exit",
                    check=env_name(
                        "local_ca_file" if self.local.certificate_refused else "local_url"
                    ),
                    **self.ctx,
                )
            )
            return ExitCode.DEPENDENCY_DOWN
        return None

    def run_until(self, stop: threading.Event) -> int:
        """Watch and report health until ``stop`` is set or the watchdog says exit."""
        s = self.settings
        next_health = time.monotonic() + min(5.0, s.health_interval_s)
        next_uplink_warn = s.uplink_down_warn_s
        code: int | None = None
        while not stop.wait(0.25):
            code = self.check()
            if code is not None:
                break
            down = self.central.down_for()
            if down > next_uplink_warn:
                stats = self.outbox.stats()
                log.error(
                    kv(
                        "uplink_down",
                        down_s=f"{down:.0f}",
                        queued=stats.depth,
                        queued_bytes=stats.bytes,
                        dropped_total=stats.dropped_total,
                        rejected_total=stats.rejected_total,
                        unreceipted=stats.unreceipted,
                        last_error=self.central.last_failure or "",
                        **self.ctx,
                    )
                )
                next_uplink_warn += s.uplink_down_warn_s
            elif down == 0:
                next_uplink_warn = s.uplink_down_warn_s
            if time.monotonic() >= next_health:
                self.report_health()
                next_health = time.monotonic() + s.health_interval_s
        return ExitCode.OK if code is None else code


def run(settings: GatewaySettings) -> int:
    """Run the gateway until SIGTERM/SIGINT or a watchdog exit; returns the exit code."""
    gateway = Gateway(settings)
    stop = threading.Event()

    def _signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _signal)
    signal.signal(signal.SIGINT, _signal)
    gateway.start()
    try:
        code = gateway.run_until(stop)
    finally:
        gateway.stop()
    return code
