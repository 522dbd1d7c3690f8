"""A centre's clock: its newest device time, advanced by wall time; saved and restored."""

from __future__ import annotations

from api.alerts.clock import CentreClocks


class Fake:
    def __init__(self) -> None:
        self.wall_ms = 1_000_000
        self.mono = 50.0

    def advance(self, seconds: float) -> None:
        self.wall_ms += int(seconds * 1000)
        self.mono += seconds


def test_a_centre_runs_on_its_devices_time_and_a_backlog_never_turns_it_back() -> None:
    t = Fake()
    clocks = CentreClocks(lambda: t.wall_ms, lambda: t.mono)
    assert clocks.now("c") == t.wall_ms  # never heard from: wall time
    clocks.see("c", 9_000_000)  # an accelerated simulator, far ahead of the wall
    t.advance(2)
    assert clocks.now("c") == 9_002_000
    clocks.see("c", 5_000_000)  # a backlog reading
    assert clocks.now("c") == 9_002_000


def test_a_restored_clock_goes_on_by_the_time_the_engine_was_down() -> None:
    t = Fake()
    clocks = CentreClocks(lambda: t.wall_ms, lambda: t.mono)
    clocks.see("c", 9_000_000)
    t.advance(1)
    [(centre, ts, wall)] = clocks.changed()
    assert clocks.changed() == []  # only what changed since
    t.advance(30)  # down for half a minute
    again = CentreClocks(lambda: t.wall_ms, lambda: t.mono + 1000)  # another process
    again.restore(centre, ts, wall)
    assert again.now("c") == 9_031_000
