from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from contract.topics import Channel, Topic, TopicError, centre_subtree, shared, subscription, topic

ids = st.from_regex(r"[a-z0-9][a-z0-9-]{0,31}", fullmatch=True)


@given(centre=ids, device=ids, channel=st.sampled_from(list(Channel)))
def test_build_then_parse_round_trips(centre: str, device: str, channel: Channel) -> None:
    built = topic(centre, device, channel)
    assert Topic.parse(built) == Topic(centre, device, channel)


@pytest.mark.parametrize(
    "bad",
    ["+", "#", "a/b", "$sys", "A", "-lead", "", "x" * 33, "a b", "ü", "a+", "a#"],
)
def test_ids_with_wildcards_separators_or_wrong_shape_are_refused(bad: str) -> None:
    with pytest.raises(TopicError):
        topic(bad, "dev", Channel.TELEMETRY)
    with pytest.raises(TopicError):
        topic("centre", bad, Channel.TELEMETRY)


@pytest.mark.parametrize(
    "bad",
    [
        "gl/v1/c/d",
        "gl/v2/c/d/telemetry",
        "gl/v1/c/d/unknown",
        "gl/v1/c/+/telemetry",
        "gl/v1/c/d/telemetry/extra",
        "gl/v1/C/d/telemetry",
        "x/v1/c/d/telemetry",
    ],
)
def test_parser_refuses_foreign_topics(bad: str) -> None:
    with pytest.raises(TopicError):
        Topic.parse(bad)


def test_subscription_filters() -> None:
    assert subscription(Channel.TELEMETRY) == "gl/v1/+/+/telemetry"
    assert subscription(Channel.CMD, "c1", "d1") == "gl/v1/c1/d1/cmd"
    assert centre_subtree("c1") == "gl/v1/c1/#"
    assert shared("ingest", "gl/v1/+/+/telemetry") == "$share/ingest/gl/v1/+/+/telemetry"
    with pytest.raises(TopicError):
        subscription(Channel.CMD, "c1/#")


@given(st.text(max_size=80))
def test_parser_raises_only_topic_error(text: str) -> None:
    with contextlib.suppress(TopicError):
        Topic.parse(text)
