"""Maintenance windows: a centre's local opening hours, inside which no ``ota`` is sent.

Opening hours are ``"HH:MM-HH:MM"`` in the centre's local time (UTC +
``Centre.utc_offset_h``); an end before the start spans midnight. A device is
commanded only when its centre is closed (unless the campaign says otherwise).
"""

from __future__ import annotations

import re
from datetime import datetime, time, timedelta

_HOURS = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]):([0-5]\d)$")


def parse_hours(text: str) -> tuple[time, time]:
    """``"09:00-17:00"`` -> (09:00, 17:00); ValueError naming the expected form."""
    found = _HOURS.match(text.strip())
    if found is None:
        raise ValueError("opening hours must look like 09:00-17:00")
    h1, m1, h2, m2 = (int(g) for g in found.groups())
    if (h1, m1) == (h2, m2):
        raise ValueError("opening hours must not start and end at the same time")
    return time(h1, m1), time(h2, m2)


def local_time(now_utc: datetime, utc_offset_h: float) -> time:
    return (now_utc + timedelta(hours=utc_offset_h)).time()


def is_open(now_utc: datetime, utc_offset_h: float, hours: str) -> bool:
    """True while the centre is open (no firmware update then)."""
    start, end = parse_hours(hours)
    now = local_time(now_utc, utc_offset_h)
    if start < end:
        return start <= now < end
    return now >= start or now < end
