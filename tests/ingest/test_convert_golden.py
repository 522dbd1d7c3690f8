"""``PointBuilder.convert`` writes exactly the lines it wrote before it was made faster.

``convert_golden.txt`` holds the output of ingest's conversion as it was on main
before the speed work (commit 696622d) for ``bench.convert.corpus()``: readings
of every device kind, single messages and envelopes, and every quarantine
reason ingest gives (contract refusals, ``patient_id_at_central``, past and
future ``ts``, ``kind_mismatch``, ``internal_error``, bad topics). A quarantine
point's timestamp is the receive time, so it is shown as ``<now>``.

Regenerate (only when the output is *meant* to change) with
``python -m tests.ingest.test_convert_golden``. Regenerated for issue #11: the
``model`` tag is the envelope record's (``m``, which the corpus stamps as a
gateway would), never a birth's, and the gateway's health metrics gained two
fields, which changed the random corpus; before regenerating, the new output was
checked to be the same with every line cache off (the slow path only).
Regenerated for issue #13: the health metrics gained ``clock_suspect_total`` and
``autonomy_h`` (the random corpus changed again; no conversion rule did).
"""

from __future__ import annotations

import difflib
import re
import sys
from pathlib import Path
from typing import Any

from bench.convert import NOW_MS, Birth, builder, corpus
from contract.codec import encode_batch_parts

GOLDEN = Path(__file__).with_name("convert_golden.txt")
POISON = "poison-1"
_QUARANTINE_TIME = re.compile(r"^(quarantine,.*) \d+$")


def _poisoned(births: list[Birth]) -> Any:
    """A builder whose model cache raises for one device: a bug, to quarantine as such."""
    points = builder(births)
    models = points._models
    profile = models.profile

    def failing(centre: str, device: str) -> tuple[str, str | None]:
        if device == POISON:
            raise RuntimeError("model cache broke")
        return profile(centre, device)

    models.profile = failing
    return points


def render() -> str:
    births, messages = corpus(singles=800, envelopes=30)
    good = b'{"v":1,"kind":"router","ts":%d,"seq":7,"metrics":{"cpu_pct":5}}' % NOW_MS
    parts = [("telemetry", dev, good, NOW_MS) for dev in ("ro-0", POISON, "ro-1")]
    messages = [
        *messages,
        ("gl/v1/c-1/poison-1/telemetry", good),
        ("gl/v1/c-1/gw-1/_gateway/batch", encode_batch_parts("gw-1", 1, parts)),
    ]
    points = _poisoned(births)
    chunks = []
    for i, (topic, payload) in enumerate(messages):
        out: list[str] = []
        count = points.convert(topic, payload, out)
        lines = [_QUARANTINE_TIME.sub(r"\1 <now>", line) for line in out]
        chunks.append(f"# {i} {topic} readings={count}\n" + "".join(f"{x}\n" for x in lines))
    return "".join(chunks)


def test_convert_output_is_byte_identical_to_before() -> None:
    expected = GOLDEN.read_text(encoding="utf-8")
    got = render()
    if got != expected:
        diff = difflib.unified_diff(
            expected.splitlines(), got.splitlines(), "before", "now", lineterm="", n=1
        )
        raise AssertionError("\n".join(list(diff)[:40]))


def test_corpus_covers_every_kind_and_reason() -> None:
    """The golden file is only a proof if the corpus reaches every case."""
    text = GOLDEN.read_text(encoding="utf-8")
    stored = [  # (measurement, device name prefix): every kind has readings stored
        ("router", "ro"),
        ("power", "po"),
        ("gateway", "ga"),
        ("health", "bp"),
        ("health", "pu"),
        ("health", "th"),
        ("health", "gl"),
        ("health", "we"),
    ]
    for measurement, device in stored:
        assert re.search(rf"^{measurement},centre=[^,]+,device={device}-\d,model=", text, re.M)
    reasons = set(re.findall(r"^quarantine,reason=([a-z_]+)", text, re.M))
    assert reasons >= {
        "bad_json",
        "bad_compression",
        "too_large",
        "wrong_version",
        "unknown_kind",
        "out_of_range",
        "invalid_schema",
        "bad_topic",
        "patient_id_at_central",
        "ts_implausible_past",
        "ts_implausible_future",
        "kind_mismatch",
        "internal_error",
    }
    assert re.search(r"^\w+,.*model=omron\\,hem\\=7120 ", text, re.M)  # escaped tags
    assert re.search(r'event="[a-z_]+",detail="\{', text)  # events with details


if __name__ == "__main__":
    GOLDEN.write_text(render(), encoding="utf-8")
    sys.stderr.write(f"wrote {GOLDEN}\n")
