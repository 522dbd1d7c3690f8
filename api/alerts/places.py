"""Where a device is: the registry facts the engine matches scopes against, cached.

Every centre (hub, district, state, coordinates, UTC offset, rated PV power)
and every device (centre, kind) is read in one pass at start and again every
``refresh_s``; a device or centre not in the cache makes a refresh happen
sooner (at most one per ``MIN_REFRESH_S``), so a device provisioned a moment
ago is placed correctly within seconds. A device the registry does not know is
placed by what its messages say (its centre from the topic, its kind from the
reading).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from alerting.rules import Place
from api.db.models import Centre, Device

MIN_REFRESH_S: Final = 5.0


@dataclass(frozen=True, slots=True)
class CentreFacts:
    hub: str | None
    district: str | None
    state: str | None
    latitude: float | None
    longitude: float | None
    utc_offset_h: float
    pv_rated_w: float | None


class Places:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        refresh_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sessions = sessions
        self._refresh_s = refresh_s
        self._clock = clock
        self._centres: dict[str, CentreFacts] = {}
        self._devices: dict[str, tuple[str, str]] = {}  # device -> (centre, kind)
        self._placed: dict[tuple[str, str | None, str | None], Place] = {}  # registered ones
        self._loaded_at = -1e18
        self.loads = 0

    def refresh(self) -> None:
        with self._sessions() as session:
            centres = {
                c.id: CentreFacts(
                    c.hub_id,
                    c.district,
                    c.state,
                    c.latitude,
                    c.longitude,
                    c.utc_offset_h if c.utc_offset_h is not None else 5.5,
                    c.pv_rated_w,
                )
                for c in session.scalars(select(Centre))
            }
            devices = {
                d_id: (centre, kind)
                for d_id, centre, kind in session.execute(
                    select(Device.id, Device.centre_id, Device.kind)
                )
            }
        self._centres, self._devices = centres, devices
        self._placed = {}
        self._loaded_at = self._clock()
        self.loads += 1

    def tick(self) -> None:
        """Refresh if ``refresh_s`` went by (callers that keep places of their own)."""
        self._fresh(True)

    def _fresh(self, known: bool) -> None:
        age = self._clock() - self._loaded_at
        if age >= self._refresh_s or (not known and age >= MIN_REFRESH_S):
            self.refresh()

    def centre(self, centre: str) -> CentreFacts | None:
        self._fresh(centre in self._centres)
        return self._centres.get(centre)

    def kind_of(self, centre: str, device: str) -> str | None:
        known = self._devices.get(device)
        self._fresh(known is not None and known[0] == centre)
        known = self._devices.get(device)
        return known[1] if known is not None and known[0] == centre else None

    def place(self, centre: str, device: str | None, kind: str | None) -> Place:
        """``device`` of ``centre`` (``kind``: what its message says, if the registry does not)."""
        return self.placed(centre, device, kind)[0]

    def placed(self, centre: str, device: str | None, kind: str | None) -> tuple[Place, bool]:
        """:meth:`place`, and whether the registry knows it all (the same until ``loads``
        changes; otherwise the next call may refresh to learn more)."""
        key = (centre, device, kind)
        self._fresh(True)
        known = self._placed.get(key)
        if known is not None:
            return known, True
        registered = self.kind_of(centre, device) if device is not None else None
        facts = self.centre(centre)
        place = Place(
            centre=centre,
            device=device,
            kind=registered or kind,
            hub=facts.hub if facts else None,
            district=facts.district if facts else None,
            state=facts.state if facts else None,
        )
        if facts is not None and (device is None or registered is not None):
            self._placed[key] = place  # all registered: the same until the next refresh
            return place, True
        return place, False
