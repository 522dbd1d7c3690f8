"""gateway/local_auth.py against a real local Mosquitto: updates from the API become
local credentials; repeats are harmless; bad updates are refused without effect."""

from __future__ import annotations

import secrets
import threading
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from contract.metrics import DeviceKind
from contract.provisioning import DynsecOp, DynsecUpdate, device_password, key_id, mqtt_username
from gateway.dynsec_seqs import AppliedSeqs
from gateway.local_auth import BadUpdate, KeyOutdated, LocalAuth
from gramlink.services import MosquittoService
from tests.conftest import BrokerFactory
from tests.factories import admin_client, close, connect_client, unique_id

CENTRE = unique_id("c")


def _refused(broker: MosquittoService, device: str, password: str) -> bool:
    client, rc = connect_client(broker, username=mqtt_username(CENTRE, device), password=password)
    client.loop_stop()
    return rc is not None and rc.is_failure


@pytest.fixture(scope="module")
def local(broker_factory: BrokerFactory) -> MosquittoService:
    return broker_factory(centre=True)


@pytest.fixture
def auth(local: MosquittoService):  # type: ignore[no-untyped-def]
    client = admin_client(local)
    key = secrets.token_bytes(32)
    yield LocalAuth(client, CENTRE, key), key
    close(client)


def _update(op: DynsecOp, device: str, version: int, seq: int) -> bytes:
    return (
        DynsecUpdate(
            op=op, device_id=device, kind=DeviceKind.ROUTER, credential_version=version, seq=seq
        )
        .model_dump_json()
        .encode()
    )


def test_upsert_is_idempotent_and_rotation_replaces_the_password(
    local: MosquittoService,
    auth,  # type: ignore[no-untyped-def]
) -> None:
    local_auth, key = auth
    device = unique_id("d")
    v1, v2 = device_password(key, device, 1), device_password(key, device, 2)
    for seq in (1, 1):  # a redelivery of the same update
        assert local_auth.apply(_update(DynsecOp.UPSERT, device, 1, seq)).ok
    assert not _refused(local, device, v1)
    local_auth.apply(_update(DynsecOp.UPSERT, device, 2, 2))
    assert _refused(local, device, v1)
    assert not _refused(local, device, v2)


def test_a_re_sent_upsert_leaves_the_connected_device_alone(
    local: MosquittoService,
    auth,  # type: ignore[no-untyped-def]
) -> None:
    local_auth, key = auth
    device = unique_id("d")
    local_auth.apply(_update(DynsecOp.UPSERT, device, 1, 1))
    client, rc = connect_client(
        local, username=mqtt_username(CENTRE, device), password=device_password(key, device, 1)
    )
    assert rc is not None and not rc.is_failure
    dropped = threading.Event()
    client.on_disconnect = lambda *a: dropped.set()
    # What the API sends when the gateway comes online again: same version, newer seq.
    local_auth.apply(_update(DynsecOp.UPSERT, device, 1, 2))
    assert not dropped.wait(1.5)
    local_auth.apply(_update(DynsecOp.UPSERT, device, 2, 3))
    assert dropped.wait(5), "a rotation must drop the connection using the old password"
    close(client)


def test_disable_drops_the_connection_and_enable_restores_it(
    local: MosquittoService,
    auth,  # type: ignore[no-untyped-def]
) -> None:
    local_auth, key = auth
    device = unique_id("d")
    password = device_password(key, device, 1)
    local_auth.apply(_update(DynsecOp.UPSERT, device, 1, 1))
    dropped = threading.Event()
    client, rc = connect_client(local, username=mqtt_username(CENTRE, device), password=password)
    assert rc is not None and not rc.is_failure
    client.on_disconnect = lambda *a: dropped.set()
    local_auth.apply(_update(DynsecOp.DISABLE, device, 1, 2))
    assert dropped.wait(5)
    client.loop_stop()
    assert _refused(local, device, password)
    local_auth.apply(_update(DynsecOp.ENABLE, device, 1, 3))
    assert not _refused(local, device, password)
    local_auth.apply(_update(DynsecOp.DELETE, device, 1, 4))
    local_auth.apply(_update(DynsecOp.DELETE, device, 1, 4))  # repeat: harmless
    assert _refused(local, device, password)


@pytest.mark.parametrize(
    "payload",
    [
        b"{not json",
        b'{"v":1,"op":"upsert","device_id":"x/#","kind":"router","credential_version":1,"seq":1}',
        b'{"v":1,"op":"upsert","device_id":"d","kind":"router",'
        b'"credential_version":1,"seq":1,"password":"leak"}',
        b"x" * 10_000,
    ],
)
def test_bad_updates_are_refused(auth, payload: bytes) -> None:  # type: ignore[no-untyped-def]
    local_auth, _ = auth
    with pytest.raises(BadUpdate):
        local_auth.apply(payload)
    assert local_auth.rejected == 1
    assert local_auth.applied == 0


def test_the_local_role_allows_only_the_devices_own_topics(
    local: MosquittoService,
    auth,  # type: ignore[no-untyped-def]
) -> None:
    local_auth, key = auth
    device = unique_id("d")
    local_auth.apply(_update(DynsecOp.UPSERT, device, 1, 1))
    client, rc = connect_client(
        local, username=mqtt_username(CENTRE, device), password=device_password(key, device, 1)
    )
    assert rc is not None and not rc.is_failure
    granted: list[list[mqtt.ReasonCode]] = []
    done = threading.Event()

    def on_subscribe(
        c: mqtt.Client, u: object, mid: int, codes: list[mqtt.ReasonCode], p: object
    ) -> None:
        granted.append(codes)
        done.set()

    client.on_subscribe = on_subscribe
    client.subscribe("gl/#", qos=1)
    assert done.wait(5)
    close(client)
    assert granted[0][0].is_failure


def test_a_late_update_never_rolls_a_device_back_even_after_a_restart(
    local: MosquittoService, tmp_path: Path
) -> None:
    client = admin_client(local)
    key, centre = secrets.token_bytes(32), CENTRE
    a, b = unique_id("d"), unique_id("d")
    seqs = AppliedSeqs(tmp_path / "gw.sqlite3", "gw-1")
    LocalAuth(client, centre, key, seqs=seqs).apply(_update(DynsecOp.UPSERT, a, 2, 5))
    seqs.close()

    # A restarted gateway: the newest seq per device comes back from disk.
    seqs = AppliedSeqs(tmp_path / "gw.sqlite3", "gw-1")
    auth = LocalAuth(client, centre, key, seqs=seqs)
    assert auth.apply(_update(DynsecOp.UPSERT, a, 1, 3)).error == "stale, skipped"
    assert not _refused(local, a, device_password(key, a, 2))
    assert _refused(local, a, device_password(key, a, 1))
    # An older seq of another device is not stale: seq orders updates per device.
    assert auth.apply(_update(DynsecOp.UPSERT, b, 1, 4)).error is None
    assert not _refused(local, b, device_password(key, b, 1))
    seqs.close()
    close(client)


def test_an_update_made_with_another_centre_key_is_refused_and_changes_nothing(
    local: MosquittoService,
    auth,  # type: ignore[no-untyped-def]
) -> None:
    local_auth, key = auth
    device = unique_id("d")
    rotated = secrets.token_bytes(32)  # the API's key after a rotation
    update = DynsecUpdate(
        op=DynsecOp.UPSERT,
        device_id=device,
        kind=DeviceKind.ROUTER,
        credential_version=2,
        seq=1,
        key_id=key_id(rotated),
    )
    with pytest.raises(KeyOutdated):
        local_auth.apply(update.model_dump_json().encode())
    assert _refused(local, device, device_password(rotated, device, 2))
    assert _refused(local, device, device_password(key, device, 2))
    matching = update.model_copy(update={"key_id": key_id(key), "seq": 2})
    assert local_auth.apply(matching.model_dump_json().encode()).ok
    assert not _refused(local, device, device_password(key, device, 2))
