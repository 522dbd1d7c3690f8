"""runtime.logs: one line per event whatever a payload holds, quiet libraries, a throttle."""

from __future__ import annotations

import io
import logging
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from runtime.logs import QUIET_LOGGERS, Throttle, configure, escape, kv
from tests.factories import wait_for
from tests.runtime.logparse import line_tokens, tokens

REPO = Path(__file__).resolve().parents[2]

HOSTILE = (
    'ok\x00\r\nlevel=ERROR logger=api event=forged "quoted" back\\slash \t\x1b[31m\u2028\x85end'
)


def test_plain_values_stay_bare() -> None:
    assert kv("reading_stored", device="dev-1", n=3, ok=True) == (
        "event=reading_stored device=dev-1 n=3 ok=True"
    )


@pytest.mark.parametrize(
    ("value", "written"),
    [
        ("", '""'),
        ("two words", '"two words"'),
        ("a=b", '"a=b"'),
        ('say "hi"', r'"say \"hi\""'),
        ("C:\\temp", r'"C:\\temp"'),
        ("nul\x00", r'"nul\x00"'),
        ("line\nbreak", r'"line\nbreak"'),
        ("cr\rtab\t", r'"cr\rtab\t"'),
        ("esc\x1b[31m", r'"esc\x1b[31m"'),
        ("sep\u2028", r'"sep\u2028"'),
        ("देवनागरी", "देवनागरी"),
    ],
)
def test_escape_quotes_and_escapes_what_could_break_a_line(value: str, written: str) -> None:
    assert escape(value) == written


def test_a_hostile_payload_stays_one_line_and_reads_back_unchanged() -> None:
    line = kv("quarantined", device="dev-1", payload=HOSTILE)

    assert line.isprintable()  # no NUL, newline, CR, ESC, separator left
    assert tokens(line) == [("event", "quarantined"), ("device", "dev-1"), ("payload", HOSTILE)]


@given(st.text(st.characters(exclude_categories=())))
@example("level=ERROR")
@example("\\")
@example('"')
@example("\\x00")
def test_any_text_is_one_printable_token_that_reads_back(value: str) -> None:
    line = kv("quarantined", payload=value)

    assert line.isprintable()
    assert tokens(line) == [("event", "quarantined"), ("payload", value)]


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """configure() changes the process's logging: put it back for the other tests."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    loggers = [logging.getLogger(name) for name in QUIET_LOGGERS]
    saved = [(lg.level, lg.propagate) for lg in loggers]
    for lg in loggers:
        lg.propagate = True  # an in-process uvicorn run with access_log=False turns it off
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for lg, (was_level, was_propagate) in zip(loggers, saved, strict=True):
        lg.setLevel(was_level)
        lg.propagate = was_propagate


@pytest.mark.usefixtures("restore_logging")
def test_a_forged_level_in_a_payload_is_not_the_level_of_the_line() -> None:
    out = io.StringIO()
    configure("info", stream=out)

    logging.getLogger("gateway.local_in").warning(kv("quarantined", payload=HOSTILE))

    lines = out.getvalue().splitlines()
    assert len(lines) == 1, lines
    assert line_tokens(lines[0]) == [
        ("level", "WARNING"),
        ("logger", "gateway.local_in"),
        ("event", "quarantined"),
        ("payload", HOSTILE),
    ]


def _emitted(stream: io.StringIO) -> list[str]:
    return [line.split(" logger=")[1] for line in stream.getvalue().splitlines()]


@pytest.mark.usefixtures("restore_logging")
def test_third_party_loggers_say_only_warnings_at_info() -> None:
    out = io.StringIO()
    configure("info", stream=out)

    for name in ("httpx", "paho", "uvicorn.access"):
        logging.getLogger(name).info("HTTP Request: POST /write 204")
        logging.getLogger(name).warning("retrying")
    logging.getLogger("ingest.worker").info(kv("started"))

    assert _emitted(out) == [
        "httpx retrying",
        "paho retrying",
        "uvicorn.access retrying",
        "ingest.worker event=started",
    ]


@pytest.mark.usefixtures("restore_logging")
def test_third_party_loggers_follow_a_stricter_process_level() -> None:
    out = io.StringIO()
    configure("error", stream=out)

    logging.getLogger("httpx").warning("retrying")
    logging.getLogger("ingest.worker").warning(kv("slow"))
    logging.getLogger("httpx").error("gave up")

    assert _emitted(out) == ["httpx gave up"]


@pytest.mark.usefixtures("restore_logging")
def test_debug_lets_third_party_loggers_speak() -> None:
    out = io.StringIO()
    configure("debug", stream=out)

    logging.getLogger("httpx").debug("HTTP Request: POST /write 204")

    assert _emitted(out) == ["httpx HTTP Request: POST /write 204"]


def test_an_unknown_level_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="'loud'"):
        configure("loud")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Lines(logging.Handler):
    """The lines a logger of its own wrote (``LEVEL message``)."""

    def __init__(self, logger: logging.Logger) -> None:
        super().__init__()
        self.logger = logger
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.levelname} {record.getMessage()}")


@pytest.fixture
def lines(request: pytest.FixtureRequest) -> Iterator[Lines]:
    logger = logging.getLogger(f"tests.throttle.{request.node.name}")
    logger.setLevel(logging.INFO)
    handler = Lines(logger)
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)


def _throttle(lines: Lines, clock: Clock, level: int = logging.INFO) -> Throttle:
    lines.logger.setLevel(level)
    return Throttle(lines.logger, interval_s=60.0, clock=clock)


def test_throttle_first_line_then_one_a_minute_with_the_count(lines: Lines) -> None:
    clock = Clock()
    throttle = _throttle(lines, clock)

    assert throttle.warning("quarantined", reason="bad_json", device="d1")
    for device in ("d2", "d3", "d4"):
        clock.now += 19.0
        assert not throttle.warning("quarantined", reason="bad_json", device=device)
    assert lines.lines == ["WARNING event=quarantined reason=bad_json device=d1"]

    clock.now = 1060.0  # one interval after the first line
    assert throttle.warning("quarantined", reason="bad_json", device="d5")
    clock.now += 59.0
    assert not throttle.warning("quarantined", reason="bad_json", device="d6")
    clock.now += 1.0
    assert throttle.error("quarantined", reason="bad_json", device="d7")
    clock.now += 600.0
    assert throttle.warning("quarantined", reason="bad_json", device="d8")

    assert lines.lines == [
        "WARNING event=quarantined reason=bad_json device=d1",
        "WARNING event=quarantined reason=bad_json device=d5 suppressed=3",
        "ERROR event=quarantined reason=bad_json device=d7 suppressed=1",
        "WARNING event=quarantined reason=bad_json device=d8",
    ]


def test_throttle_keys_are_independent(lines: Lines) -> None:
    clock = Clock()
    throttle = _throttle(lines, clock)

    assert throttle.warning("quarantined", key="bad_json", reason="bad_json")
    assert throttle.warning("quarantined", key="wrong_kind", reason="wrong_kind")
    assert not throttle.warning("quarantined", key="bad_json", reason="bad_json")
    assert throttle.warning("downlink_not_delivered", centre="c1")  # key: the event
    assert not throttle.warning("downlink_not_delivered", centre="c2")

    assert lines.lines == [
        "WARNING event=quarantined reason=bad_json",
        "WARNING event=quarantined reason=wrong_kind",
        "WARNING event=downlink_not_delivered centre=c1",
    ]


def test_throttle_escapes_its_fields(lines: Lines) -> None:
    throttle = _throttle(lines, Clock())

    throttle.warning("quarantined", payload="x\nlevel=ERROR")

    assert lines.lines == [r'WARNING event=quarantined payload="x\nlevel=ERROR"']


def test_throttle_counts_nothing_below_the_logger_level(lines: Lines) -> None:
    clock = Clock()
    throttle = _throttle(lines, clock, level=logging.ERROR)

    assert not throttle.warning("quarantined")
    assert not throttle.warning("quarantined")
    assert throttle.error("quarantined")

    assert lines.lines == ["ERROR event=quarantined"]


def test_throttle_lets_one_line_through_from_many_threads(lines: Lines) -> None:
    clock = Clock()
    throttle = _throttle(lines, clock)
    start = threading.Barrier(8)
    written: list[bool] = []

    def burst() -> None:
        start.wait()
        written.extend(throttle.warning("quarantined") for _ in range(2000))

    threads = [threading.Thread(target=burst) for _ in range(8)]
    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads interleave between almost any two bytecodes
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(switch)
    clock.now += 60.0
    throttle.warning("quarantined")

    assert written.count(True) == 1
    assert lines.lines == [
        "WARNING event=quarantined",
        "WARNING event=quarantined suppressed=15999",
    ]


def test_flush_reports_a_burst_followed_by_silence(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    logger = logging.getLogger("test.throttle.flush")
    throttle = Throttle(logger, interval_s=60.0, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger=logger.name):
        for _ in range(5):
            throttle.warning("bad_payload", device="d1")
        assert throttle.flush() == 0, "the interval has not passed yet"
        now[0] = 61.0
        assert throttle.flush() == 1
        assert throttle.flush() == 0, "each suppressed line is reported once"
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["event=bad_payload device=d1", "event=bad_payload suppressed=4"]


def test_flush_forced_at_shutdown(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("test.throttle.force")
    throttle = Throttle(logger, interval_s=60.0, clock=lambda: 0.0)
    with caplog.at_level(logging.WARNING, logger=logger.name):
        throttle.warning("bad_payload")
        throttle.warning("bad_payload")
        assert throttle.flush(force=True) == 1
    assert caplog.records[-1].getMessage() == "event=bad_payload suppressed=1"


@pytest.mark.usefixtures("restore_logging")
def test_a_burst_followed_by_silence_ends_with_its_count_without_anyone_asking() -> None:
    out = io.StringIO()
    configure("info", stream=out, flush_every_s=0.05)
    throttle = Throttle(logging.getLogger("test.throttle.flusher"), interval_s=0.2)
    for _ in range(5):
        throttle.warning("bad_payload", device="d1")
    wait_for(lambda: "suppressed=4" in out.getvalue(), 10, "the burst's count")
    # (other tests' throttles in this process are flushed too: only this logger's lines)
    mine = [
        line for line in out.getvalue().splitlines() if " logger=test.throttle.flusher " in line
    ]
    lines = [line.split(" ", 4)[-1] for line in mine]
    assert lines == ["event=bad_payload device=d1", "event=bad_payload suppressed=4"]


def test_the_counts_left_at_exit_are_written() -> None:
    script = (
        "import logging\n"
        "from runtime.logs import Throttle, configure\n"
        "configure('info')\n"
        "throttle = Throttle(logging.getLogger('x'))\n"
        "for _ in range(3):\n"
        "    throttle.warning('bad_payload')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("event=bad_payload") == 2
    assert "event=bad_payload suppressed=2" in done.stderr
