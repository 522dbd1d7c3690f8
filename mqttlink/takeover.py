"""A session takeover inferred from a broker that does not announce it.

MQTT v5 brokers tell the older of two clients with one client id so
(DISCONNECT 0x8E, permanent in :mod:`mqttlink.reasons`). Mosquitto before 2.0.15
(Debian 12 ships 2.0.11) only closes the older connection, so the two processes
knock each other off in turn, each right after it connected. Both MQTT clients
of the project (the paho link and the ``mqtt5`` session) infer a takeover with
:class:`TakeoverGuess`: ``losses`` connections in a row that the broker closed
silently, each younger than ``stable_s``. The older process loses first, so it
stops and the newer one keeps the session. A failed connect, a refused CONNACK,
a DISCONNECT from the broker or our own close resets the count.
"""

from __future__ import annotations

from typing import Final

STABLE_S: Final = 10.0


class TakeoverGuess:
    def __init__(self, losses: int, stable_s: float = STABLE_S) -> None:
        self.losses = losses
        self.stable_s = stable_s
        self.count = 0  # silent quick losses in a row
        self._up_since: float | None = None

    def up(self, now: float) -> None:
        """A connection was accepted (CONNACK success)."""
        self._up_since = now

    def reset(self) -> None:
        """Something other than a silent close happened: the count starts again."""
        self.count = 0
        self._up_since = None

    def lost(self, now: float, *, silent: bool) -> bool:
        """A connection ended (``silent``: closed by the broker without a DISCONNECT);
        True when this makes ``losses`` silent quick losses in a row."""
        up_since, self._up_since = self._up_since, None
        quick = up_since is not None and now - up_since < self.stable_s
        self.count = self.count + 1 if silent and quick else 0
        return self.count >= self.losses
