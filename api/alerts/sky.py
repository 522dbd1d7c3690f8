"""The clear-sky expectation of each centre, for the solar-yield rule.

:class:`alerting.solar.ClearSky` (pvlib) for the centre's latitude, longitude,
UTC offset and rated PV power from the registry; one per centre, rebuilt when
those facts change, sharing one cache of day curves. A centre without
coordinates or without a rated power has no expectation (``None``): its
solar-yield rule never fires.
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

from alerting.evaluation import ClearSkyFn
from api.alerts.places import CentreFacts, Places

log = logging.getLogger(__name__)


def _solar() -> Any:
    """``alerting.solar`` (pvlib), or None where it is not installed."""
    try:
        return importlib.import_module("alerting.solar")
    except ImportError:
        log.warning("event=clear_sky_unavailable effect=solar-yield rules never fire")
        return None


class Skies:
    def __init__(self) -> None:
        self._solar: Any = None
        self._loaded = False
        self._curves: Any = None
        self._by_centre: dict[str, tuple[CentreFacts, ClearSkyFn]] = {}

    def of(self, centre: str, places: Places) -> ClearSkyFn | None:
        facts = places.centre(centre)
        if facts is None or facts.latitude is None or facts.longitude is None:
            return None
        if not facts.pv_rated_w:
            return None
        known = self._by_centre.get(centre)
        if known is not None and known[0] == facts:
            return known[1]
        solar = self._module()
        if solar is None:
            return None
        sky = solar.ClearSky(
            facts.latitude,
            facts.longitude,
            facts.utc_offset_h,
            facts.pv_rated_w,
            curves=self._curves,
        )

        def expected(ts_ms: int) -> tuple[float, float]:
            return sky.expected_energy_wh(ts_ms), sky.expected_day_energy_wh(ts_ms)

        self._by_centre[centre] = (facts, expected)
        return expected

    def _module(self) -> Any:
        if not self._loaded:
            self._loaded = True
            self._solar = _solar()
            if self._solar is not None:
                self._curves = self._solar.DayCurves()
        return self._solar
