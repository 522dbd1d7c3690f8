"""An error the engine's rounds do not isolate ends its thread loudly: the reason is
logged with its traceback and kept, and the process that runs it stops (exit 1)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from api.main import RefusalWatch
from tests.alerts.conftest import EngineFactory
from tests.factories import wait_for


def test_an_error_outside_a_round_ends_the_engine_thread_with_its_reason(
    start_engine: EngineFactory, caplog: pytest.LogCaptureFixture
) -> None:
    service = start_engine().service

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("a bug outside a round")

    service.inbox.take = broken  # type: ignore[method-assign]
    wait_for(lambda: not service.alive, 10, "the engine thread ended")
    assert service.failure == "the alert engine failed: RuntimeError: a bug outside a round"
    failed = [r for r in caplog.records if "event=alert_engine_failed" in r.getMessage()]
    assert len(failed) == 1 and failed[0].exc_info is not None


def test_the_api_stops_serving_when_its_alert_engine_failed() -> None:
    server = SimpleNamespace(should_exit=False)  # what RefusalWatch uses of uvicorn.Server
    failures: list[str | None] = [None]
    watch = RefusalWatch(server, list, lambda: failures)  # type: ignore[arg-type]
    watch.start()
    try:
        failures[0] = "the alert engine failed: RuntimeError: a bug"
        wait_for(lambda: server.should_exit, 5, "the server told to exit")
        assert watch.failure == "the alert engine failed: RuntimeError: a bug"
        assert watch.refusal is None
    finally:
        watch.stop()
