"""One exit-code table for every GramLink process (documented in docs/architecture.md).

Permanent codes mean "restarting cannot help until someone changes a setting or
the environment": systemd units list them in ``RestartPreventExitStatus`` and
``gramlink demo`` stops on them; every other non-zero code is restarted.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    INTERNAL = 1  # an unexpected error (a bug): restart, and read the traceback
    CONFIG = 2  # a bad or missing setting, an unreadable file named by a setting
    DEPENDENCY_DOWN = 3  # a broker or database unreachable for longer than the watchdog allows
    REFUSED = 4  # a broker refused the login, the client id or a subscription for good
    SESSION_TAKEN_OVER = 5  # another process connected with the same client id
    STORAGE_MISSING = 6  # the InfluxDB database or bucket does not exist (gramlink influx init)

    @property
    def permanent(self) -> bool:
        return self in PERMANENT


PERMANENT: frozenset[ExitCode] = frozenset(
    {ExitCode.CONFIG, ExitCode.REFUSED, ExitCode.SESSION_TAKEN_OVER, ExitCode.STORAGE_MISSING}
)


def is_permanent(code: int | None) -> bool:
    """True for an exit code that a restart cannot fix (unknown codes are transient)."""
    return code in {c.value for c in PERMANENT}
