"""Where the demo's centres are: real places in Samba district (Jammu & Kashmir), with its
hub in Samba town, and spokes in Samba's villages and, from the fifth, in neighbouring
Kathua district. Coordinates are the villages' approximate centres (to about 1 km).

The demo's ids stay ``hub``, ``spoke1``, ``spoke2``, ...; ``place_of(id)`` gives each
its place, so the geomap, the district variables and the clear-sky expectation of the
dashboards show something true.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import httpx


@dataclass(frozen=True)
class Place:
    name: str
    village: str
    district: str
    state: str
    latitude: float
    longitude: float
    country: str = "IN"
    utc_offset_h: float = 5.5


_JK: Final = "Jammu and Kashmir"
HUB: Final = Place("Samba CSC hub", "Samba", "Samba", _JK, 32.5625, 75.1199)
SPOKES: Final = (
    Place("Vijaypur CSC", "Vijaypur", "Samba", _JK, 32.5640, 75.0120),
    Place("Ghagwal CSC", "Ghagwal", "Samba", _JK, 32.5190, 75.2000),
    Place("Ramgarh CSC", "Ramgarh", "Samba", _JK, 32.6360, 75.1930),
    Place("Purmandal CSC", "Purmandal", "Samba", _JK, 32.6560, 74.9990),
    Place("Hiranagar CSC", "Hiranagar", "Kathua", _JK, 32.4540, 75.2720),
    Place("Marheen CSC", "Marheen", "Kathua", _JK, 32.4250, 75.3500),
    Place("Nagri CSC", "Nagri", "Kathua", _JK, 32.3980, 75.4300),
)


def place_of(centre: str) -> Place:
    """The place of the demo centre ``hub`` or ``spokeN`` (N from 1; cycles past the list)."""
    if centre == "hub":
        return HUB
    index = int(centre.removeprefix("spoke")) - 1
    return SPOKES[index % len(SPOKES)]


def locate(api: httpx.Client, centres: list[str]) -> None:
    """Give each demo centre its place in the registry (idempotent: a PATCH per centre)."""
    for centre in centres:
        place = place_of(centre)
        body = {
            "name": place.name,
            "village": place.village,
            "district": place.district,
            "state": place.state,
            "country": place.country,
            "latitude": place.latitude,
            "longitude": place.longitude,
        }
        api.patch(f"/v1/centres/{centre}", json=body).raise_for_status()
