"""The clear-sky expectation of a centre's solar panels, hour by hour.

Sun position from the day of the year, the centre's latitude and longitude
(declination by Cooper's formula, solar time from the longitude), global
horizontal irradiance by the Haurwitz clear-sky model
(``GHI = 1098 cos z · exp(-0.057 / cos z)`` W/m²), and the panels' expected
power as ``pv_rated_w · GHI / 1000`` (rated power is given at 1000 W/m²). It is
an upper reference, not a forecast: a clear day reaches about it, a cloudy day
or dirty panels stay below.
"""

from __future__ import annotations

import math
from typing import Final

HOUR_S: Final = 3600
DAY_S: Final = 86_400


def cos_zenith(t_s: float, latitude: float, longitude: float) -> float:
    """cos(solar zenith angle) at a UTC time (seconds) and place; 0 when the sun is down."""
    day_of_year = (t_s / DAY_S) % 365.25
    declination = math.radians(23.44) * math.sin(2 * math.pi * (day_of_year - 81) / 365.0)
    solar_hour = (t_s / HOUR_S + longitude / 15.0) % 24.0
    hour_angle = math.radians(15.0 * (solar_hour - 12.0))
    lat = math.radians(latitude)
    value = math.sin(lat) * math.sin(declination) + math.cos(lat) * math.cos(
        declination
    ) * math.cos(hour_angle)
    return max(0.0, value)


def ghi_w_m2(t_s: float, latitude: float, longitude: float) -> float:
    """Clear-sky global horizontal irradiance (Haurwitz)."""
    c = cos_zenith(t_s, latitude, longitude)
    if c <= 0.01:
        return 0.0
    return 1098.0 * c * math.exp(-0.057 / c)


def expected_pv_w(t_s: float, latitude: float, longitude: float, pv_rated_w: float) -> float:
    return pv_rated_w * ghi_w_m2(t_s, latitude, longitude) / 1000.0


def local_day_start_s(t_s: float, utc_offset_h: float) -> int:
    """UTC seconds of the local midnight that starts the local day of ``t_s``."""
    offset = utc_offset_h * HOUR_S
    return int((t_s + offset) // DAY_S * DAY_S - offset)
