"""Two gateways started with the same gateway id: the newer keeps the session, the
older stops with exit 5 and one line saying another process took its session (seen on
the centre's broker, where both gateways connect with the same id too)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from gramlink.services import MosquittoService
from tests.factories import wait_for
from tests.gateway.conftest import GatewayFactory

pytestmark = pytest.mark.slow


def test_a_second_gateway_with_our_id_takes_the_session_and_the_first_exits_5(
    local_broker: MosquittoService,
    mosquitto: MosquittoService,
    make_gateway: GatewayFactory,
    centre: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR)
    older = make_gateway(centre, local_broker, mosquitto)
    wait_for(older.central.connected.is_set, 10, "older gateway up")
    newer = make_gateway(centre, local_broker, mosquitto, data_dir=tmp_path / "other")
    codes: list[int | None] = []
    wait_for(lambda: codes.append(older.check()) or codes[-1] is not None, 30, "older stops")
    assert codes[-1] == 5  # ExitCode.SESSION_TAKEN_OVER
    lines = [r.getMessage() for r in caplog.records if "event=broker_refused" in r.getMessage()]
    assert len(lines) == 1
    assert "another process connected with the same client id" in lines[0]
    assert "GRAMLINK_GATEWAY_GATEWAY_ID" in lines[0]
    # told by the centre's own broker: the uplink never stops on a guess (a rural link
    # drops young connections by itself), and Mosquitto 2.0.11 sends no DISCONNECT 0x8E
    assert "link=local" in lines[0]
    older.stop()
    wait_for(newer.central.connected.is_set, 10, "newer gateway up")
    wait_for(newer.local.connected.is_set, 10, "newer gateway on the local broker")
    assert newer.check() is None
