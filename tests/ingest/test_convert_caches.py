"""What ingest caches to convert faster never outlives what a device's birth says."""

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


def convert(points: object, seq: int, envelope: bool, metrics: str | None = None) -> str:
    payload = router(seq) if metrics is None else router(seq, metrics)
    out: list[str] = []
    if envelope:
        batch = encode_batch_parts("gw-1", seq, [("telemetry", "r-1", payload, NOW_MS)])
        points.convert(BATCH, batch, out)  # type: ignore[attr-defined]
    else:
        points.convert(TOPIC, payload, out)  # type: ignore[attr-defined]
    assert len(out) == 1
    return out[0]


@pytest.mark.parametrize("envelope", [False, True], ids=["single", "envelope"])
def test_a_birth_changes_the_readings_after_it(envelope: bool) -> None:
    points = builder([])
    for seq in (1, 2):  # the second one from the caches
        assert convert(points, seq, envelope).startswith(
            "router,centre=c-1,device=r-1,model=unknown "
        )
    points._models.learn("c-1", "r-1", "tp mr6400", "router")
    assert convert(points, 3, envelope).startswith(
        "router,centre=c-1,device=r-1,model=tp\\ mr6400 "
    )
    points._models.learn("c-1", "r-1", "other", None)  # a birth naming the model only
    assert convert(points, 4, envelope).startswith("router,centre=c-1,device=r-1,model=other ")
    points._models.learn("c-1", "r-1", None, "power")  # re-registered as a power unit
    line = convert(points, 5, envelope)
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
    points._models.learn("c-1", "r-1", "100%{x}s", "router")
    for seq in (1, 2):
        line = convert(points, seq, False)
        assert line.startswith(
            "router,centre=c-1,device=r-1,model=100%{x}s wan_up=true,cpu_pct=5.5,"
        )


@pytest.mark.parametrize("envelope", [False, True], ids=["single", "envelope"])
def test_a_birth_after_many_others_still_counts(envelope: bool) -> None:
    """More births between two readings than the model cache's change log holds."""
    points = builder([])
    points._models.learn("c-1", "r-1", "first", "router")
    assert " " in convert(points, 1, envelope)
    for i in range(5000):
        points._models.learn("c-2", f"d-{i}", "m", "power")
    points._models.learn("c-1", "r-1", "second", "router")
    assert convert(points, 2, envelope).startswith("router,centre=c-1,device=r-1,model=second ")


def test_a_birth_of_one_device_leaves_the_others_alone() -> None:
    points = builder([])
    other = b'{"v":1,"kind":"router","ts":%d,"seq":1,"metrics":{"cpu_pct":1.5}}' % NOW_MS
    for seq in (1, 2):
        out: list[str] = []
        points.convert("gl/v1/c-1/r-2/telemetry", other, out)
        convert(points, seq, False)
    points._models.learn("c-1", "r-1", "new", "router")
    out = []
    points.convert("gl/v1/c-1/r-2/telemetry", other, out)
    assert out[0].startswith("router,centre=c-1,device=r-2,model=unknown cpu_pct=1.5,")
    assert convert(points, 3, False).startswith("router,centre=c-1,device=r-1,model=new ")
