"""What ingest caches to convert faster never outlives what a device's birth says (its
kind), and a line's ``model`` tag is the envelope record's (docs/architecture.md)."""

from __future__ import annotations

import pytest

from bench.convert import NOW_MS, builder
from contract.codec import encode_batch_parts

TOPIC = "gl/v1/c-1/r-1/telemetry"
BATCH = "gl/v1/c-1/gw-1/_gateway/batch"


def router(seq: int, metrics: str = '"cpu_pct":5.5,"wan_up":true') -> bytes:
    return b'{"v":1,"kind":"router","ts":%d,"seq":%d,"metrics":{%s}}' % (
        NOW_MS,
        seq,
        metrics.encode(),
    )


def convert(
    points: object, seq: int, envelope: bool, metrics: str | None = None, model: str | None = None
) -> str:
    """One reading's line; in an envelope, its record stamped with ``model``."""
    payload = router(seq) if metrics is None else router(seq, metrics)
    out: list[str] = []
    if envelope:
        batch = encode_batch_parts("gw-1", seq, [("telemetry", "r-1", payload, NOW_MS, model)])
        points.convert(BATCH, batch, out)  # type: ignore[attr-defined]
    else:
        points.convert(TOPIC, payload, out)  # type: ignore[attr-defined]
    assert len(out) == 1
    return out[0]


@pytest.mark.parametrize("envelope", [False, True], ids=["single", "envelope"])
def test_the_model_tag_comes_from_the_record_and_a_birth_changes_only_the_kind_check(
    envelope: bool,
) -> None:
    points = builder([])
    stamped = "tp mr6400" if envelope else None
    for seq in (1, 2):  # the second one from the caches
        assert convert(points, seq, envelope, model=stamped).startswith(
            "router,centre=c-1,device=r-1,model=unknown "
            if stamped is None
            else "router,centre=c-1,device=r-1,model=tp\\ mr6400 "
        )
    points._models.learn("c-1", "r-1", "what-the-birth-says", "router")
    expected = "unknown " if stamped is None else "tp\\ mr6400 "
    assert convert(points, 3, envelope, model=stamped).startswith(
        "router,centre=c-1,device=r-1,model=" + expected
    )
    if envelope:  # another model in the record: another series (the record decides)
        assert convert(points, 4, envelope, model="other").startswith(
            "router,centre=c-1,device=r-1,model=other "
        )
    points._models.learn("c-1", "r-1", None, "power")  # re-registered as a power unit
    line = convert(points, 5, envelope, model=stamped)
    assert line.startswith("quarantine,reason=kind_mismatch,centre=c-1,device=r-1 ")
    assert "a router message from r-1, registered as power" in line


@pytest.mark.parametrize("envelope", [False, True], ids=["single", "envelope"])
def test_cached_lines_follow_each_readings_values(envelope: bool) -> None:
    """Fields in the contract's order (whatever the payload's), values of each reading."""
    points = builder([])
    first = convert(points, 1, envelope, '"cpu_pct":5.5,"wan_up":true')
    second = convert(points, 2, envelope, '"cpu_pct":7,"wan_up":false')
    other = convert(points, 3, envelope, '"wan_up":false,"uptime_s":12')
    assert first.split(" ", 1)[1] == "wan_up=true,cpu_pct=5.5,seq=1i 1780000000000000001"
    assert second.split(" ", 1)[1] == "wan_up=false,cpu_pct=7.0,seq=2i 1780000000000000002"
    assert other.split(" ", 1)[1] == "uptime_s=12i,wan_up=false,seq=3i 1780000000000000003"


def test_a_percent_sign_in_a_model_is_kept() -> None:
    points = builder([])
    for seq in (1, 2):
        line = convert(points, seq, True, model="100%{x}s")
        assert line.startswith(
            "router,centre=c-1,device=r-1,model=100%{x}s wan_up=true,cpu_pct=5.5,"
        )


@pytest.mark.parametrize("envelope", [False, True], ids=["single", "envelope"])
def test_a_birth_after_many_others_still_counts(envelope: bool) -> None:
    """More births between two readings than the model cache's change log holds."""
    points = builder([])
    points._models.learn("c-1", "r-1", "first", "router")
    assert convert(points, 1, envelope).startswith("router,")
    for i in range(5000):
        points._models.learn("c-2", f"d-{i}", "m", "power")
    points._models.learn("c-1", "r-1", "second", "power")
    assert convert(points, 2, envelope).startswith("quarantine,reason=kind_mismatch,")


def test_a_birth_of_one_device_leaves_the_others_alone() -> None:
    points = builder([])
    other = b'{"v":1,"kind":"router","ts":%d,"seq":1,"metrics":{"cpu_pct":1.5}}' % NOW_MS
    for seq in (1, 2):
        out: list[str] = []
        points.convert("gl/v1/c-1/r-2/telemetry", other, out)
        convert(points, seq, False)
    points._models.learn("c-1", "r-1", "new", "power")
    out = []
    points.convert("gl/v1/c-1/r-2/telemetry", other, out)
    assert out[0].startswith("router,centre=c-1,device=r-2,model=unknown cpu_pct=1.5,")
    assert convert(points, 3, False).startswith("quarantine,reason=kind_mismatch,")
