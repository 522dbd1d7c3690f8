"""A simulated centre's devices and the site facts the registry keeps about it.

``build_centre`` is the one way a centre is put together (the fleet uses it;
tests step its devices without a broker). ``SiteFacts`` is what the alert
rules need from the registry: where the centre is (latitude, longitude), its
clock (UTC offset) and its PV array's rated power, all decided by the fleet
seed and the centre id, so a provisioning step can compute them before the
fleet runs (``site_facts``) and find the same values in a running fleet.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from firmware_sim.devices import Device, PowerUnit, centre_layout
from firmware_sim.environment import CentreEnv
from firmware_sim.scenario import apply_scenario


@dataclass(frozen=True)
class SiteFacts:
    latitude: float
    longitude: float
    utc_offset_h: float
    pv_rated_w: float | None  # the centre's first power unit's panel, W peak (None: no unit)

    @classmethod
    def of(cls, env: CentreEnv, devices: Sequence[Device]) -> SiteFacts:
        panel = next((d.panel_wp for d in devices if isinstance(d, PowerUnit)), None)
        return cls(env.latitude, env.longitude, env.utc_offset_h, panel)


def build_centre(
    centre: str,
    seed: int,
    start_ms: int,
    devices_per_centre: int,
    *,
    validate: bool = True,
    interval_s: int | None = None,
    scenario: str | None = None,
    place: tuple[float, float] | None = None,
    layout: Sequence[tuple[str, type[Device]]] | None = None,
) -> tuple[CentreEnv, list[Device]]:
    """A centre's surroundings and its standard device set, with a scenario applied if named.

    ``place``: the centre's (latitude, longitude); None: placed from the seed.
    ``layout``: (device id, class) of the centre's devices; None: the standard set.
    """
    latitude, longitude = place or (0.0, 0.0)
    env = CentreEnv(seed, centre, latitude=latitude, longitude=longitude)
    devices: list[Device] = [
        cls(centre, device_id, env, seed, start_ms, validate=validate, interval_s=interval_s)
        for device_id, cls in (
            layout if layout is not None else centre_layout(centre, devices_per_centre)
        )
    ]
    if scenario is not None:
        apply_scenario(scenario, env, devices, start_ms)
    return env, devices


def site_facts(
    seed: int, centre: str, devices_per_centre: int, place: tuple[float, float] | None = None
) -> SiteFacts:
    """The facts of a centre as a fleet with this seed simulates it (no broker, no clock)."""
    env, devices = build_centre(centre, seed, 0, devices_per_centre, place=place)
    return SiteFacts.of(env, devices)
