"""Two workers started the same way get distinct client ids and metrics ports.

Before, both defaulted to ``ingest-1`` and port 9108 and knocked each other off
the broker; now each claims the lowest free slot on its host (``runtime.slots``).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from ingest.identity import identity, slot_client_id
from runtime.slots import SlotError, claim, host_label
from tests.factories import unique_id, wait_for
from tests.ingest.conftest import REPO, count, run_ingest, worker_settings
from tests.ingest.test_failures import Stream, all_stored


def test_lowest_free_slot_and_the_same_one_back_after_a_restart(tmp_path: Path) -> None:
    first, second = claim(tmp_path, "w"), claim(tmp_path, "w")
    assert (first.number, second.number) == (1, 2)
    first.release()  # the worker of slot 1 stops
    again = claim(tmp_path, "w")
    assert again.number == 1
    again.release()
    second.release()


def test_a_killed_process_frees_its_slot(tmp_path: Path) -> None:
    code = (
        "import sys, time; from pathlib import Path; from runtime.slots import claim; "
        f"s = claim(Path({str(tmp_path)!r}), 'w'); print(s.number, flush=True); time.sleep(60)"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout is not None
    assert holder.stdout.readline().strip() == "1"
    with claim(tmp_path, "w") as mine:
        assert mine.number == 2
    holder.kill()
    holder.wait(10)
    with claim(tmp_path, "w") as mine:
        assert mine.number == 1


def test_unusable_state_dir_is_one_config_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(SlotError, match="cannot create"):
        claim(blocker / "sub", "w")


def test_host_label_is_a_valid_id_part() -> None:
    assert host_label(hostname="Central-01.example.org") == "central-01"
    long_a = host_label(hostname="a-very-long-central-server-name-number-one")
    long_b = host_label(hostname="a-very-long-central-server-name-number-two")
    assert long_a != long_b and len(long_a) <= 20
    assert len(slot_client_id(64, long_a)) <= 32


def test_explicit_client_id_and_port_win(mosquitto, influx, tmp_path: Path) -> None:
    settings = worker_settings(
        mosquitto, influx, client_id="ingest-x", metrics_port=9999, state_dir=tmp_path
    )
    with identity(settings) as resolved:
        assert (resolved.client_id, resolved.metrics_port) == ("ingest-x", 9999)
    auto = worker_settings(mosquitto, influx, client_id="", metrics_port=None, state_dir=tmp_path)
    with identity(auto) as one, identity(auto) as two:
        assert one.client_id == f"ingest-{host_label()}-1"
        assert two.client_id == f"ingest-{host_label()}-2"
        assert two.metrics_port == one.metrics_port + 1 == auto.metrics_port_base + 1


def _two_free_ports() -> int:
    """A port P such that P and P + 1 are both free right now."""
    for _ in range(50):
        with socket.socket() as a:
            a.bind(("127.0.0.1", 0))
            base = a.getsockname()[1]
            with socket.socket() as b:
                try:
                    b.bind(("127.0.0.1", base + 1))
                except OSError:
                    continue
                return int(base)
    raise AssertionError("no two consecutive free ports")


@pytest.mark.slow
def test_two_workers_started_the_same_way_both_consume(
    mosquitto, influx, start_process, tmp_path: Path
) -> None:
    centre = unique_id("c")
    base = _two_free_ports()
    settings = worker_settings(
        mosquitto,
        influx,
        client_id="",  # the defaults under test
        metrics_port=None,
        metrics_port_base=base,
        state_dir=tmp_path / "state",
        share_group=unique_id("g"),
        receive_maximum=500,
    )
    a = start_process(settings)
    a.metrics_port = base
    wait_for(lambda: a.metric("gramlink_ingest_subscribed") == 1.0, 20, "first worker")
    b = start_process(settings)
    b.metrics_port = base + 1
    wait_for(lambda: b.metric("gramlink_ingest_subscribed") == 1.0, 20, "second worker")

    stream = Stream(mosquitto, centre, per_device=300)
    stream.finish()
    all_stored(influx, stream)
    share_a = a.metric("gramlink_ingest_messages_total") or 0
    share_b = b.metric("gramlink_ingest_messages_total") or 0
    assert share_a > 0 and share_b > 0, (share_a, share_b)
    assert share_a + share_b >= stream.total
    assert a.metric("gramlink_ingest_subscribed") == b.metric("gramlink_ingest_subscribed") == 1.0
    assert a.proc.poll() is None and b.proc.poll() is None
    assert a.stop() == 0 and b.stop() == 0
    logs = [a.log.read_text(), b.log.read_text()]
    host = host_label()
    assert f"client_id=ingest-{host}-1" in logs[0]
    assert f"client_id=ingest-{host}-2" in logs[1]
    for text in logs:  # nobody was knocked off the broker
        assert "mqtt_disconnected" not in text, text


@pytest.mark.slow
def test_a_restarted_worker_gets_its_slot_back(
    mosquitto, influx, start_process, tmp_path: Path
) -> None:
    centre = unique_id("c")
    settings = worker_settings(
        mosquitto,
        influx,
        client_id="",
        metrics_port=None,
        metrics_port_base=_two_free_ports(),
        state_dir=tmp_path / "state",
    )
    first = start_process(settings)
    first.metrics_port = settings.metrics_port_base
    first.wait_ready()
    first.kill()  # SIGKILL: the lock goes with the process
    stream = Stream(mosquitto, centre, per_device=150)  # queued in its persistent session
    stream.finish()
    again = start_process(settings)
    again.metrics_port = settings.metrics_port_base
    all_stored(influx, stream)
    assert again.stop() == 0
    for worker in (first, again):
        assert f"client_id=ingest-{host_label()}-1 " in worker.log.read_text()
    assert count(influx, "power", centre) == stream.total
    assert os.listdir(tmp_path / "state") == ["ingest-1.lock"]


def test_a_busy_metrics_port_is_one_config_line(mosquitto, influx) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = run_ingest(worker_settings(mosquitto, influx, metrics_port=port))
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: setting GRAMLINK_INGEST_METRICS_PORT")
    assert str(port) in lines[0]
