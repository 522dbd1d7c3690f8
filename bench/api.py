"""Benchmark of the API: provisioning throughput by CSV (including the broker round
trip) and list/filter/get latency with N devices registered.

Run: ``.venv/bin/python -m bench.api [--devices 10000] [--per-centre 100]
[--logins files|dynsec]``. Starts its own Mosquitto and an API (uvicorn, SQLite) on
free ports in a temp dir; ``--logins`` picks where the central broker keeps device
logins (its password/ACL files, or dynamic security).
"""

from __future__ import annotations

import argparse
import random
import secrets
import statistics
import tempfile
import threading
import time
from pathlib import Path

import httpx
import uvicorn

from api.broker_files import login_accepted
from api.main import create_app
from api.schemas import Role
from api.services.tokens import create_token
from api.settings import ApiSettings
from gramlink.services import MosquittoService
from gramlink.services.process import free_port, wait_until
from mqttlink.endpoint import Endpoint

KINDS = (
    "router",
    "power",
    "bp_monitor",
    "pulse_oximeter",
    "thermometer",
    "glucometer",
    "weighing_scale",
)


def rollout_csv(devices: int, per_centre: int) -> str:
    lines = ["centre_id,device_id,kind,model,centre_name"]
    for i in range(devices):
        centre = f"bc-{i // per_centre:05d}"
        kind = "gateway" if i % per_centre == 0 else KINDS[i % len(KINDS)]
        lines.append(f"{centre},bd-{i:06d},{kind},m{i % 5},Centre {centre}")
    return "\n".join(lines) + "\n"


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return statistics.median(ordered) * 1000, p99 * 1000


def timed(client: httpx.Client, paths: list[str]) -> tuple[float, float, float]:
    samples = []
    started = time.perf_counter()
    for path in paths:
        t0 = time.perf_counter()
        response = client.get(path)
        samples.append(time.perf_counter() - t0)
        assert response.status_code == 200, response.text[:200]
    elapsed = time.perf_counter() - started
    p50, p99 = percentiles(samples)
    return p50, p99, len(paths) / elapsed


def timed_posts(client: httpx.Client, devices: list[str]) -> tuple[float, float, float]:
    """Suspend then resume each device: two broker round trips per device."""
    samples = []
    started = time.perf_counter()
    for device in devices:
        for action in ("suspend", "resume"):
            t0 = time.perf_counter()
            response = client.post(f"/v1/devices/{device}/{action}")
            samples.append(time.perf_counter() - t0)
            assert response.status_code == 200, response.text[:200]
    p50, p99 = percentiles(samples)
    return p50, p99, len(samples) / (time.perf_counter() - started)


def seed(app: object, start: int, count: int, per_centre: int) -> None:
    """Registry rows only (for latency at scale when provisioning them all would take long)."""
    from api.db.models import Centre, Device

    with app.state.components.sessions.begin() as session:  # type: ignore[attr-defined]
        for i in range(start, start + count):
            centre = f"bc-{i // per_centre:05d}"
            if i % per_centre == 0 and session.get(Centre, centre) is None:
                session.add(Centre(id=centre, name=centre, key_version=1))
                session.flush()
            kind = "gateway" if i % per_centre == 0 else KINDS[i % len(KINDS)]
            session.add(
                Device(
                    id=f"bd-{i:06d}",
                    centre_id=centre,
                    kind=kind,
                    model=f"m{i % 5}",
                    status="provisioned",
                    credential_version=1,
                    dynsec_seq=0,
                    online=False,
                )
            )


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--per-centre", type=int, default=100)
    parser.add_argument("--requests", type=int, default=2_000)
    parser.add_argument("--logins", choices=("files", "dynsec"), default="files")
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="registry rows inserted directly (no broker) before the latency runs",
    )
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="gl-bench-api-"))
    broker = MosquittoService(
        home / "mosquitto",
        free_port(),
        secrets.token_urlsafe(16),
        login_files=args.logins == "files",
    )
    broker.start()
    port = free_port()
    files = {"broker_files_dir": broker.home} if args.logins == "files" else {}
    settings = ApiSettings(  # type: ignore[arg-type]
        **files,
        db_url=f"sqlite:///{home / 'api.sqlite'}",
        mqtt_url=broker.url,
        mqtt_admin_password=broker.admin_password,
        master_secret=secrets.token_urlsafe(40),
        mqtt_timeout_s=120,
        presence=False,
        port=port,
        page_max=100,
    )
    app = create_app(settings)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started, 30, "uvicorn")
        with app.state.components.sessions.begin() as session:
            token = create_token(session, Role.ADMIN, "bench")
        client = httpx.Client(
            base_url=f"http://127.0.0.1:{port}",
            headers={"Authorization": f"Bearer {token}"},
            timeout=600,
        )
        body = rollout_csv(args.devices, args.per_centre)
        print(f"provisioning {args.devices} devices by CSV ({args.logins}) ...", flush=True)
        t0 = time.perf_counter()
        answer = client.post("/v1/devices/bulk", content=body, headers={"content-type": "text/csv"})
        provision_s = time.perf_counter() - t0
        assert answer.status_code == 201, answer.text[:300]
        print(f"  {provision_s:.1f} s", flush=True)
        sample = random.Random(2).sample(answer.json()["credentials"], 20)
        accepted = sum(
            login_accepted(
                Endpoint.parse(broker.url), row["username"], row["password"], time.monotonic() + 5
            )
            for row in sample
        )
        print(f"  {accepted} of {len(sample)} sampled devices log in with their credentials")
        assert accepted == len(sample)
        if args.seed:
            seed(app, args.devices, args.seed, args.per_centre)
        total = args.devices + args.seed
        ids = [f"bd-{i:06d}" for i in range(total) if i % args.per_centre]
        centres = [f"bc-{i:05d}" for i in range(max(1, total // args.per_centre))]
        rnd = random.Random(1)
        n = args.requests
        rows = [
            (
                "get /v1/devices/{id}",
                timed(client, [f"/v1/devices/{rnd.choice(ids)}" for _ in range(n)]),
            ),
            (
                "list centre=X limit=100",
                timed(
                    client,
                    [f"/v1/devices?centre_id={rnd.choice(centres)}&limit=100" for _ in range(n)],
                ),
            ),
            (
                "list kind=K limit=100 offset",
                timed(
                    client,
                    [
                        f"/v1/devices?kind={rnd.choice(KINDS[2:])}&limit=100"
                        f"&offset={rnd.randrange(0, 1000, 100)}"
                        for _ in range(n // 4)
                    ],
                ),
            ),
        ]
        rows.append(("suspend + resume (each)", timed_posts(client, rnd.sample(ids, 20))))
        print()
        print(
            f"devices registered: {total} ({len(centres)} centres, one gateway each; "
            f"{args.seed} of them inserted without the broker)"
        )
        print(
            f"provisioning by CSV ({args.logins}) incl. broker round trip: {provision_s:.1f} s "
            f"= {args.devices / provision_s:.0f} devices/s"
        )
        print(f"{'request':32} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>8}")
        for name, (p50, p99, rate) in rows:
            print(f"{name:32} {p50:8.1f} {p99:8.1f} {rate:8.0f}")
    finally:
        server.should_exit = True
        thread.join(30)
        broker.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
