"""Alert ids: derived from what opened the alert, so the gateway and the centre agree.

The id of an alert is a hash of the rule, the subject and the reading (device
time and seq) that began the episode, or the instant a timer began for alerts
no reading opens (absence, offline). The same reading seen at the centre's
gateway and later by the central engine gives the same id: one alert.
"""

from __future__ import annotations

import hashlib


def alert_id(rule_id: str, subject: str, ts_ms: int, seq: int) -> str:
    digest = hashlib.sha256(f"{rule_id}|{subject}|{ts_ms}|{seq}".encode()).hexdigest()
    return f"al-{digest[:24]}"
