"""Ports for the services tests and benchmarks start: free, and out of the way of the
local ends of outgoing connections."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from gramlink.services import process
from gramlink.services.process import LOWEST_PICKED, free_port


def test_a_free_port_lies_below_the_range_outgoing_connections_take_theirs() -> None:
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    ports = {free_port() for _ in range(20)}
    assert all(LOWEST_PICKED <= port < low for port in ports), sorted(ports)
    for port in ports:  # and nobody is bound to it
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))


def test_a_port_bound_by_someone_else_is_not_given(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        busy = taken.getsockname()[1]
        picks = iter([busy, busy + 1 if busy + 1 != 0 else busy - 1])
        monkeypatch.setattr(process._ports, "randrange", lambda _lo, _hi: next(picks))
        monkeypatch.setattr(process, "_ephemeral_low", lambda: 60_000)
        assert free_port() != busy


def test_without_room_below_the_ephemeral_range_the_kernel_chooses(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    wide = tmp_path / "ip_local_port_range"
    wide.write_text("1024\t65535\n")
    monkeypatch.setattr(process, "EPHEMERAL_RANGE_FILE", wide)
    port = free_port()
    assert 1024 <= port <= 65535
