"""Errors of the gateway, one tree.

::

    GatewayError                      base; never raised itself
    ├── ConfigError                   permanent: a setting is missing or wrong (stop at start)
    ├── StoreError                    permanent: the SQLite outbox cannot be opened or written
    │                                 (disk gone, file corrupt); the process exits non-zero
    └── LocalAuthError                a credential update was not applied (gateway/local_auth.py)
        ├── BadUpdate                 permanent: not a valid DynsecUpdate (quarantined, acked)
        ├── LocalBrokerRefused        permanent: the dynsec plugin refused it (quarantined, acked)
        └── LocalBrokerTimeout        retryable: no answer from the local broker (retried with
                                      backoff, not acked)

A device payload that breaks the contract is not an error of the gateway: it is
a ``contract.DecodeError`` (or ``TopicError``), counted and quarantined with its
reason, never raised past the ingest loop. A broker connection raises nothing
either: a refusal is a value (``mqttlink.reasons.Refusal`` on ``link.refusal``)
that the watchdog turns into its exit code.
"""

from __future__ import annotations


class GatewayError(Exception):
    """Base of every gateway error."""

    retryable = False


class ConfigError(GatewayError):
    """A setting is missing or invalid; the message names it."""


class StoreError(GatewayError):
    """The local SQLite store failed (sqlite3 errors are mapped here in outbox/quarantine)."""
