"""``gramlink sim``: run a fleet of simulated centre devices against a broker."""

from __future__ import annotations

import argparse
import sys
import time

from firmware_sim.errors import ConfigError
from firmware_sim.faults import FaultConfig
from firmware_sim.fleet import Fleet, FleetConfig
from firmware_sim.settings import SimSettings, load_settings
from firmware_sim.workers import WorkerFleet
from runtime.exits import ExitCode
from runtime.logs import configure

DAY_MS = 86_400_000


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser("sim", help="simulate centre devices (routers, power, health)")
    p.add_argument(
        "--mqtt-url", help="broker, mqtt://host:port or mqtts:// (default mqtt://127.0.0.1:1883)"
    )
    p.add_argument("--mqtt-ca-file", help="CA (PEM) that signed the broker's TLS certificate")
    p.add_argument("--mqtt-cert-file", help="client certificate (PEM), with --mqtt-key-file")
    p.add_argument("--mqtt-key-file", help="client certificate's key (PEM)")
    p.add_argument("--username", dest="mqtt_username", help="MQTT user when no credentials file")
    p.add_argument("--password", dest="mqtt_password", help="prefer GRAMLINK_SIM_MQTT_PASSWORD")
    p.add_argument("--centres", type=int)
    p.add_argument("--devices-per-centre", type=int)
    p.add_argument("--centre-prefix", help="centre ids are PREFIX001, PREFIX002, ... (default c)")
    p.add_argument("--mode", choices=["device", "centre"], help="connection per device or centre")
    p.add_argument("--duration", dest="duration_s", type=float, help="stop after S seconds")
    p.add_argument("--readings", type=int, help="stop after N readings")
    p.add_argument("--accelerate", type=float, help="simulated seconds per real second")
    p.add_argument("--backfill-days", type=float, help="generate the past D days, fast")
    p.add_argument("--seed", type=int)
    p.add_argument("--interval", dest="interval_s", type=int, help="telemetry interval, s")
    p.add_argument("--qos", dest="telemetry_qos", type=int, choices=[0, 1])
    p.add_argument("--credentials", help="CSV from the provisioning API")
    p.add_argument("--will-delay", dest="will_delay_s", type=int)
    for name in (
        "malformed-rate",
        "clock-skew-s",
        "duplicate-rate",
        "reorder-rate",
        "offline-every-s",
        "offline-s",
        "qos0-burst-every-s",
    ):
        p.add_argument(f"--{name}", dest=name.replace("-", "_"), type=float)
    p.add_argument("--qos0-burst-size", type=int)
    p.add_argument(
        "--client",
        choices=["paho", "raw"],
        help="MQTT client (default: raw per centre, paho per device)",
    )
    p.add_argument("--workers", type=int, help="worker processes (load tests; default 1)")
    p.add_argument(
        "--scenario",
        choices=["demo"],
        help="scripted troubles on the first centre (battery, grid cut, SpO2, a silent device)",
    )
    p.add_argument("--log-level", default="WARNING")
    p.set_defaults(func=run)


def fleet_config(s: SimSettings) -> FleetConfig:
    from firmware_sim.credentials import load_sheet

    endpoint = s.broker()
    sheet = load_sheet(s.credentials) if s.credentials else []
    creds = {row.device: (row.username, row.password) for row in sheet}
    now = time.time_ns() // 1_000_000
    backfill = s.backfill_days > 0
    faults = FaultConfig(
        malformed_rate=s.malformed_rate,
        clock_skew_s=s.clock_skew_s,
        duplicate_rate=s.duplicate_rate,
        reorder_rate=s.reorder_rate,
        offline_every_s=s.offline_every_s,
        offline_s=s.offline_s,
        qos0_burst_every_s=s.qos0_burst_every_s,
        qos0_burst_size=s.qos0_burst_size,
    )
    return FleetConfig(
        host=endpoint.host,
        port=endpoint.port,
        tls=endpoint.tls,
        tls_files=s.tls_files(),
        centres=s.centres,
        devices_per_centre=s.devices_per_centre,
        centre_prefix=s.centre_prefix,
        mode=s.mode,
        seed=s.seed,
        accelerate=None if backfill else s.accelerate,
        start_ms=now - int(s.backfill_days * DAY_MS) if backfill else None,
        backfill_end_ms=now if backfill else None,
        username=s.mqtt_username,
        password=s.mqtt_password.get_secret_value() if s.mqtt_password else None,
        credentials=creds,
        roster=tuple((row.centre, row.device, row.kind) for row in sheet),
        interval_s=s.interval_s,
        telemetry_qos=s.telemetry_qos,
        will_delay_s=s.will_delay_s,
        faults=faults,
        client=s.client,
        scenario=s.scenario,
    )


def run(args: argparse.Namespace) -> int:
    configure(args.log_level)
    options = {k: v for k, v in vars(args).items() if k not in ("func", "command", "log_level")}
    try:
        settings = load_settings(**options)
        config = fleet_config(settings)
        fleet: Fleet | WorkerFleet = (
            WorkerFleet(config, settings.workers) if settings.workers > 1 else Fleet(config)
        )
    except (ConfigError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return ExitCode.CONFIG
    if not config.username and not config.credentials:
        print(
            "error: GRAMLINK_SIM_MQTT_USERNAME: no MQTT login (or --credentials)", file=sys.stderr
        )
        return ExitCode.CONFIG
    centres = len(config.centre_list())
    devices = (
        sum(map(len, config.layouts().values()))
        if config.roster
        else centres * config.devices_per_centre
    )
    print(
        f"sim: {devices} devices in {centres} centres, "
        f"{centres if config.mode == 'centre' else devices} connections ({config.mode} mode, "
        f"{settings.workers} process(es)) -> {settings.mqtt_url}",
        file=sys.stderr,
        flush=True,
    )

    def progress(stats: object) -> None:
        print(f"\r{stats.line()}   ", end="", file=sys.stderr, flush=True)  # type: ignore[attr-defined]

    try:
        final = fleet.run(
            readings=settings.readings, duration_s=settings.duration_s, progress=progress
        )
    except KeyboardInterrupt:  # Ctrl-C: run() already stopped the fleet cleanly
        final = fleet.stats()
    print(f"\r{final.line()}   ", file=sys.stderr, flush=True)
    if fleet.fatal():
        print(f"error: {fleet.fatal()}", file=sys.stderr)
        return ExitCode.REFUSED
    return ExitCode.OK
