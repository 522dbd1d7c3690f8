"""The one reason-code table: by value, permanent or not, and what each means to a client."""

from __future__ import annotations

import pytest

from mqttlink.reasons import (
    NO_MATCHING_SUBSCRIBERS,
    NOT_AUTHORIZED,
    SESSION_TAKEN_OVER,
    Fix,
    Refusal,
    SettingNames,
    delivered,
    reason,
    subscription_refused,
)
from runtime.exits import ExitCode

NAMES = SettingNames("GL_URL", "GL_USER", "GL_PASSWORD", client_id="GL_CLIENT_ID", ca_file="GL_CA")


@pytest.mark.parametrize("code", [0x84, 0x85, 0x86, 0x87, 0x8A, 0x8C, 0x8E])
def test_login_and_session_refusals_are_permanent(code: int) -> None:
    assert reason(code).permanent


@pytest.mark.parametrize("code", [0x80, 0x88, 0x89, 0x8B, 0x8D, 0x97, 0x98, 0x9F, 0xFE])
def test_server_trouble_and_unknown_codes_are_transient(code: int) -> None:
    found = reason(code)
    assert found.failure and not found.permanent
    assert found.exit_code is ExitCode.DEPENDENCY_DOWN


def test_exit_codes_separate_refusals_from_a_taken_over_session() -> None:
    assert reason(0x86).exit_code is ExitCode.REFUSED
    assert reason(SESSION_TAKEN_OVER).exit_code is ExitCode.SESSION_TAKEN_OVER


@pytest.mark.parametrize(
    ("code", "expected"),
    [(0x00, True), (NO_MATCHING_SUBSCRIBERS, False), (0x80, False), (NOT_AUTHORIZED, False)],
)
def test_only_success_codes_other_than_no_matching_subscribers_are_delivered(
    code: int, expected: bool
) -> None:
    assert delivered(code) is expected


def test_a_refused_subscription_is_permanent_even_for_a_transient_code() -> None:
    found = subscription_refused(0x80)
    assert found.permanent and found.fix is Fix.ACL
    assert found.exit_code is ExitCode.REFUSED


def test_refusal_lines_name_the_setting_to_fix() -> None:
    login = Refusal.of("uplink login", reason(0x86), "mqtt://h:1883", NAMES)
    assert login.exit_code is ExitCode.REFUSED
    assert "0x86 bad user name or password" in login.line
    assert login.line.endswith("check GL_USER / GL_PASSWORD")
    taken = Refusal.of("uplink", reason(SESSION_TAKEN_OVER), "mqtt://h:1883", NAMES)
    assert taken.exit_code is ExitCode.SESSION_TAKEN_OVER
    assert "same client id" in taken.line and taken.line.endswith("check GL_CLIENT_ID")
    acl = Refusal.of("sub", subscription_refused(NOT_AUTHORIZED), "mqtt://h", NAMES)
    assert "lacks the rights" in acl.line and "GL_USER" in acl.line
    broker = Refusal.of("x", reason(0x84), "mqtt://h", NAMES)
    assert broker.line.endswith("check GL_URL")
    assert "\n" not in login.line + taken.line + acl.line


def test_a_subscription_refused_for_a_missing_broker_feature_names_the_broker() -> None:
    assert subscription_refused(0x9E).fix is Fix.BROKER  # shared subscriptions not supported
