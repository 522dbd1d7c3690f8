"""A clock-suspect envelope record (``BatchRecord.cs``) reads at its receive time."""

from __future__ import annotations

import zlib

from contract.codec import decode_batch, decode_batch_readings, encode, encode_batch_parts
from contract.messages import telemetry
from contract.metrics import PulseOximeterMetrics


def test_a_suspect_record_reads_at_its_receive_time_with_the_device_time_kept() -> None:
    payload = encode(
        telemetry("pulse_oximeter", ts=0, seq=3, metrics=PulseOximeterMetrics(spo2_pct=97.0))
    )
    rx = 1_790_000_000_000
    envelope = encode_batch_parts(
        "gw-1",
        7,
        [
            ("telemetry", "oxi-1", payload, rx, "m1", True),
            ("telemetry", "oxi-2", payload, rx, "m1", False),
            ("telemetry", "oxi-3", payload, rx),
        ],
    )
    suspect, trusted, older = decode_batch_readings(envelope).readings
    assert (suspect[2]["ts"], suspect[2]["device_ts"]) == (rx, 0)
    assert trusted[2]["ts"] == 0 and "device_ts" not in trusted[2]
    assert older[2]["ts"] == 0 and "device_ts" not in older[2]
    assert [r.cs for r in decode_batch(envelope).records] == [True, None, None]


def test_cs_null_or_absent_trusts_the_device_time() -> None:
    raw = (
        b'{"v":1,"gw":"g","seq":1,"records":[{"ch":"telemetry","dev":"d","p":{"v":1,'
        b'"kind":"router","ts":5,"seq":1,"metrics":{"uptime_s":1}},"rx":9,"cs":null}]}'
    )
    ((_, _, reading),) = decode_batch_readings(zlib.compress(raw)).readings
    assert reading["ts"] == 5 and "device_ts" not in reading
