"""Errors of the simulator.

Tree (each says whether retrying can help)::

    SimError                      base of everything the simulator raises
    ├── ConfigError               permanent: a bad option, seed, id or credentials file
    ├── ConnectError              retryable: the broker did not answer / refused the TCP connect
    │   ├── AuthError             permanent: the broker refused the credentials (CONNACK 0x86/0x87)
    │   (mqttlink.inbox.InboxError: bytes the raw client cannot parse; rawlink.py
    │    drops the connection and retries; mqttlink.session.Refused: rawlink.py stops)
    └── OtaError                  permanent for that command: download failed, wrong SHA-256

Third-party errors (paho, httpx, OSError) are mapped to these at one boundary
each (``link.py``/``rawlink.py`` for MQTT, ``ota.py`` for HTTP).
"""

from __future__ import annotations


class SimError(Exception):
    """Base of the simulator's errors."""

    retryable = False


class ConfigError(SimError):
    """A setting, an id or the credentials file is wrong (permanent)."""


class ConnectError(SimError):
    """The broker could not be reached (retryable)."""

    retryable = True


class AuthError(ConnectError):
    """The broker refused the credentials (permanent: stop, do not retry forever)."""

    retryable = False


class OtaError(SimError):
    """A firmware update failed; the device keeps its old version."""
