"""MQTT v5 reason codes by value (MQTT v5 section 2.4), and what a GramLink client does with each.

One table for CONNACK, DISCONNECT, SUBACK and PUBACK. ``permanent`` means that
retrying with the same settings cannot succeed:

- on a connection (CONNACK, DISCONNECT, a refused subscription in SUBACK) the
  process stops with :attr:`Reason.exit_code` and one line naming the cause and
  the setting to fix; transient ones back off and retry;
- on a PUBACK the message is never counted as delivered unless
  :func:`delivered` says so; a permanent code sends it to quarantine with the
  code as its reason, a transient one (including 0x10, no matching
  subscribers: nobody stored it) keeps it queued for a retry.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Final

from runtime.exits import ExitCode


class Fix(Enum):
    """Which setting a person must change after a permanent refusal."""

    CREDENTIALS = "credentials"  # user name / password / client certificate
    CLIENT_ID = "client_id"
    ACL = "acl"  # the account's rights on the broker
    BROKER = "broker"  # the broker's own configuration or version
    CA_FILE = "ca_file"  # the CA that should have signed the broker's TLS certificate


@dataclass(frozen=True, slots=True)
class Reason:
    code: int
    name: str
    permanent: bool = False
    fix: Fix | None = None

    @property
    def failure(self) -> bool:
        return self.code >= 0x80

    @property
    def exit_code(self) -> ExitCode:
        """The exit code of a process stopped by this reason on its connection."""
        if self.code == SESSION_TAKEN_OVER:
            return ExitCode.SESSION_TAKEN_OVER
        if self.fix is Fix.CA_FILE:
            return ExitCode.CONFIG
        return ExitCode.REFUSED if self.permanent else ExitCode.DEPENDENCY_DOWN

    def __str__(self) -> str:
        return f"0x{self.code:02x} {self.name}"


NO_MATCHING_SUBSCRIBERS: Final = 0x10
NOT_AUTHORIZED: Final = 0x87
SESSION_TAKEN_OVER: Final = 0x8E

_TABLE: Final[dict[int, Reason]] = {
    r.code: r
    for r in (
        Reason(0x00, "success"),
        Reason(0x01, "granted QoS 1"),
        Reason(0x02, "granted QoS 2"),
        Reason(0x04, "disconnect with will message"),
        Reason(NO_MATCHING_SUBSCRIBERS, "no matching subscribers"),
        Reason(0x11, "no subscription existed"),
        Reason(0x80, "unspecified error"),
        Reason(0x81, "malformed packet"),
        Reason(0x82, "protocol error"),
        Reason(0x83, "implementation specific error"),
        Reason(0x84, "unsupported protocol version", True, Fix.BROKER),
        Reason(0x85, "client identifier not valid", True, Fix.CLIENT_ID),
        Reason(0x86, "bad user name or password", True, Fix.CREDENTIALS),
        Reason(NOT_AUTHORIZED, "not authorized", True, Fix.CREDENTIALS),
        Reason(0x88, "server unavailable"),
        Reason(0x89, "server busy"),
        Reason(0x8A, "banned", True, Fix.CREDENTIALS),
        Reason(0x8B, "server shutting down"),
        Reason(0x8C, "bad authentication method", True, Fix.CREDENTIALS),
        Reason(0x8D, "keep alive timeout"),
        Reason(SESSION_TAKEN_OVER, "session taken over", True, Fix.CLIENT_ID),
        Reason(0x8F, "topic filter invalid", True, Fix.ACL),
        Reason(0x90, "topic name invalid", True, Fix.ACL),
        Reason(0x91, "packet identifier in use"),
        Reason(0x92, "packet identifier not found"),
        Reason(0x93, "receive maximum exceeded"),
        Reason(0x94, "topic alias invalid"),
        Reason(0x95, "packet too large", True, Fix.BROKER),
        Reason(0x96, "message rate too high"),
        Reason(0x97, "quota exceeded"),
        Reason(0x98, "administrative action"),
        Reason(0x99, "payload format invalid", True, Fix.BROKER),
        Reason(0x9A, "retain not supported", True, Fix.BROKER),
        Reason(0x9B, "QoS not supported", True, Fix.BROKER),
        Reason(0x9C, "use another server", True, Fix.BROKER),
        Reason(0x9D, "server moved", True, Fix.BROKER),
        Reason(0x9E, "shared subscriptions not supported", True, Fix.BROKER),
        Reason(0x9F, "connection rate exceeded"),
        Reason(0xA0, "maximum connect time"),
        Reason(0xA1, "subscription identifiers not supported", True, Fix.BROKER),
        Reason(0xA2, "wildcard subscriptions not supported", True, Fix.BROKER),
    )
}


def reason(code: int) -> Reason:
    """The table's entry for ``code``; an unknown failure code is transient."""
    found = _TABLE.get(code)
    if found is not None:
        return found
    return Reason(code, "unknown reason code")


def delivered(code: int) -> bool:
    """True when a PUBACK with ``code`` means the broker passed the message on.

    0x10 is a success code in the protocol, but nobody received the message:
    for a publisher that relies on a consumer it is not delivered.
    """
    return code < 0x80 and code != NO_MATCHING_SUBSCRIBERS


def subscription_refused(code: int) -> Reason:
    """A SUBACK failure code: always permanent for us (the filters are ours and fixed).

    The fix is the account's rights (0x87 in a SUBACK is an ACL, not a password),
    unless the broker lacks a feature (shared or wildcard subscriptions).
    """
    found = reason(code)
    if found.fix is Fix.BROKER:
        return found
    return Reason(found.code, found.name, True, Fix.ACL)


@dataclass(frozen=True, slots=True)
class SettingNames:
    """The settings a person edits to fix a refusal, named as the process documents them."""

    url: str
    username: str
    password: str
    client_id: str | None = None
    ca_file: str | None = None

    def for_fix(self, fix: Fix | None) -> str:
        if fix is Fix.CLIENT_ID and self.client_id:
            return self.client_id
        if fix is Fix.CA_FILE and self.ca_file:
            return self.ca_file
        if fix in (Fix.CREDENTIALS, Fix.ACL):
            return f"{self.username} / {self.password}"
        return self.url


def refusal_line(what: str, found: Reason, url: str, names: SettingNames) -> str:
    """The one line a process prints when a broker refuses it for good."""
    if found.code == SESSION_TAKEN_OVER:
        cause = "another process connected with the same client id and took over the session"
    elif found.fix is Fix.ACL:
        cause = f"the account lacks the rights ({found})"
    else:
        cause = str(found)
    return f"{what}: {url} refused us: {cause}; check {names.for_fix(found.fix)}"


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a connection stopped for good: the process exits with ``exit_code`` after ``line``."""

    reason: Reason
    line: str

    @property
    def exit_code(self) -> ExitCode:
        return self.reason.exit_code

    @classmethod
    def of(cls, what: str, found: Reason, url: str, names: SettingNames) -> Refusal:
        return cls(found, refusal_line(what, found, url, names))
