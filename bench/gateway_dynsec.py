"""Local enforcement benchmark: how fast a gateway applies the API's credential updates.

Two real Mosquitto brokers (local, central) and the gateway as a subprocess
(``python -m gramlink gateway`` with a centre key). The benchmark plays the API:
it queues ``--devices`` upserts (a new centre's seeding) on the central broker
while the gateway is **stopped**, starts it, and times until the gateway has
acknowledged the last one (``_gateway/dynsec/ack``); then it sends as many
disables with the gateway running and times those too.

    .venv/bin/python -m bench.gateway_dynsec [--devices 500]
"""

from __future__ import annotations

import argparse
import json
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt

from bench import gateway as gateway_bench
from contract.metrics import DeviceKind
from contract.provisioning import (
    DynsecOp,
    DynsecUpdate,
    centre_key,
    dynsec_ack_topic,
    dynsec_topic,
    encode_key,
)
from gramlink.services import MosquittoService
from gramlink.services.process import free_port

CENTRE = "benchdyn"
GW = f"{CENTRE}-gw"
MASTER = secrets.token_bytes(32)


class Api:
    """The API's side: publishes updates, counts the gateway's acks."""

    def __init__(self, central: MosquittoService) -> None:
        self.acked: set[int] = set()
        self.failed = 0
        self.lock = threading.Lock()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id="bench-api", protocol=mqtt.MQTTv5
        )
        self.client.username_pw_set(central.admin_user, central.admin_password)
        self.client.on_message = self._on_message
        self.client.connect(central.bind, central.port)
        self.client.loop_start()
        self.client.subscribe(dynsec_ack_topic(CENTRE, GW), qos=1)
        self.seq = 0

    def _on_message(self, c: mqtt.Client, u: object, msg: mqtt.MQTTMessage) -> None:
        ack = json.loads(msg.payload)
        with self.lock:
            self.acked.add(int(ack["seq"]))
            self.failed += 0 if ack["ok"] else 1

    def send(self, op: DynsecOp, device: str) -> int:
        self.seq += 1
        update = DynsecUpdate(
            op=op, device_id=device, kind=DeviceKind.ROUTER, credential_version=1, seq=self.seq
        )
        self.client.publish(dynsec_topic(CENTRE, GW), update.model_dump_json(), qos=1)
        return self.seq

    def has(self, seq: int) -> bool:
        with self.lock:
            return seq in self.acked


def start_gateway(
    local: MosquittoService, central: MosquittoService, data: Path
) -> subprocess.Popen[bytes]:
    key = encode_key(centre_key(MASTER, CENTRE, 1))
    return gateway_bench.start_gateway(
        local, central, data, centre=CENTRE, extra_env={"GRAMLINK_GATEWAY_CENTRE_KEY": key}
    )


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    proc.wait(30)


def main() -> int:
    parser = argparse.ArgumentParser(prog="bench.gateway_dynsec")
    parser.add_argument("--devices", type=int, default=500, help="updates per phase")
    args = parser.parse_args()
    n = args.devices
    with tempfile.TemporaryDirectory(prefix="gl-bench-dynsec-") as tmp:
        root = Path(tmp)
        local = MosquittoService(root / "local", free_port(), secrets.token_urlsafe(16))
        central = MosquittoService(root / "central", free_port(), secrets.token_urlsafe(16))
        local.start()
        central.start()
        api = Api(central)
        try:
            print("first start: the gateway's session subscribes", flush=True)
            gw = start_gateway(local, central, root / "gw")
            first = api.send(DynsecOp.UPSERT, "dev-warmup")
            deadline = time.monotonic() + 30
            while not api.has(first):  # resent until the subscription exists
                if time.monotonic() > deadline:
                    raise SystemExit("the gateway never acknowledged its first update")
                api.client.publish(
                    dynsec_topic(CENTRE, GW),
                    DynsecUpdate(
                        op=DynsecOp.UPSERT,
                        device_id="dev-warmup",
                        kind=DeviceKind.ROUTER,
                        credential_version=1,
                        seq=first,
                    ).model_dump_json(),
                    qos=1,
                )
                time.sleep(0.5)
            stop(gw)

            print(f"queueing {n} upserts while the gateway is stopped", flush=True)
            last = 0
            for i in range(n):
                last = api.send(DynsecOp.UPSERT, f"dev-{i}")
            t0 = time.monotonic()
            gw = start_gateway(local, central, root / "gw")
            gateway_bench.wait(lambda: api.has(last), 600, "the last upsert")
            seeding = time.monotonic() - t0

            print(f"sending {n} disables to the running gateway", flush=True)
            t0 = time.monotonic()
            for i in range(n):
                last = api.send(DynsecOp.DISABLE, f"dev-{i}")
            gateway_bench.wait(lambda: api.has(last), 600, "the last disable")
            live = time.monotonic() - t0
            stop(gw)
        finally:
            api.client.loop_stop()
            central.stop()
            local.stop()
    rows = [
        ("queued upserts applied after start (incl. process start)", n, seeding),
        ("disables applied while running", n, live),
    ]
    print("\n| phase | updates | seconds | updates/s |\n|---|---|---|---|")
    for name, count, secs in rows:
        print(f"| {name} | {count} | {secs:.1f} | {count / secs:.0f} |")
    print(f"negative acks: {api.failed}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
