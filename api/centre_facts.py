"""Registry facts for the dashboards: the ``centres`` and ``solar_expected`` measurements.

Grafana reads only InfluxDB, so the API writes there what panels and template
variables need from the registry:

- ``centres``: one point per centre, tags ``centre``, ``district``, ``state``,
  ``hub`` (the hub's id; a hub names itself), fields ``name``, ``village``,
  ``latitude``, ``longitude``, ``online`` (1 while a gateway of the centre is
  connected, else 0), ``utc_offset_h``, ``pv_rated_w`` (fields without a value
  are left out; a centre without a state or district is tagged ``unassigned``);
- ``solar_expected``: for centres with a place and ``pv_rated_w``, the clear-sky
  PV power (``pv_expected_w``, :mod:`api.clear_sky`) at every hour of the local
  days from ``history_days`` ago to tomorrow, written once per centre and day
  (again when the centre's place or panels change).

Written every ``interval_s`` and soon after a change: a commit that added,
changed or deleted a centre or a device (presence marking a gateway online or
offline included) wakes the writer, which coalesces wake-ups.
Runs on its own thread; a failed write (InfluxDB down) is logged once, retried
at the next round, and a "resumed" line follows. Nothing here can stop the API.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final

import httpx
from sqlalchemy import event, func, select
from sqlalchemy.orm import ORMExecuteState, Session, sessionmaker

from api.clear_sky import DAY_S, HOUR_S, expected_pv_w, local_day_start_s
from api.db.models import Centre, Device
from contract.metrics import DeviceKind

log = logging.getLogger(__name__)
MEASUREMENT: Final = "centres"
SOLAR_MEASUREMENT: Final = "solar_expected"
UNASSIGNED: Final = "unassigned"
MIN_GAP_S: Final = 1.0  # wake-ups closer than this are written together


@dataclass(frozen=True)
class CentreFact:
    id: str
    name: str
    village: str | None
    district: str | None
    state: str | None
    hub: str
    latitude: float | None
    longitude: float | None
    online: bool
    utc_offset_h: float
    pv_rated_w: float | None

    def solar_key(self) -> tuple[float, float, float, float] | None:
        if self.latitude is None or self.longitude is None or not self.pv_rated_w:
            return None
        return (self.latitude, self.longitude, self.pv_rated_w, self.utc_offset_h)


def _tag(value: str) -> str:
    return value.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=").replace(" ", "\\ ")


def _string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def centre_line(fact: CentreFact, t_ns: int) -> str:
    tags = (
        f"centre={_tag(fact.id)},district={_tag(fact.district or UNASSIGNED)},"
        f"hub={_tag(fact.hub)},state={_tag(fact.state or UNASSIGNED)}"
    )
    fields = [f"name={_string(fact.name)}", f"online={int(fact.online)}i"]
    fields.append(f"utc_offset_h={float(fact.utc_offset_h)!r}")
    if fact.village:
        fields.append(f"village={_string(fact.village)}")
    for name in ("latitude", "longitude", "pv_rated_w"):
        value = getattr(fact, name)
        if value is not None:
            fields.append(f"{name}={float(value)!r}")
    return f"{MEASUREMENT},{tags} {','.join(fields)} {t_ns}"


def solar_lines(fact: CentreFact, day_start_s: int) -> list[str]:
    """The clear-sky power of ``fact`` at each hour of one local day (none without a place)."""
    key = fact.solar_key()
    if key is None:
        return []
    latitude, longitude, rated, _ = key
    lines = []
    for hour in range(24):
        t = day_start_s + hour * HOUR_S
        watts = round(expected_pv_w(t, latitude, longitude, rated), 1)
        lines.append(
            f"{SOLAR_MEASUREMENT},centre={_tag(fact.id)} pv_expected_w={watts!r} {t}000000000"
        )
    return lines


def read_facts(session: Session) -> list[CentreFact]:
    online = (
        select(Device.centre_id, func.count().label("n"))
        .where(Device.kind == DeviceKind.GATEWAY.value, Device.online.is_(True))
        .group_by(Device.centre_id)
        .subquery()
    )
    rows = session.execute(
        select(Centre, online.c.n).outerjoin(online, online.c.centre_id == Centre.id)
    )
    return [
        CentreFact(
            id=c.id,
            name=c.name,
            village=c.village,
            district=c.district,
            state=c.state,
            hub=c.hub_id or c.id,
            latitude=c.latitude,
            longitude=c.longitude,
            online=bool(n),
            utc_offset_h=c.utc_offset_h if c.utc_offset_h is not None else 5.5,
            pv_rated_w=c.pv_rated_w,
        )
        for c, n in rows
    ]


class InfluxLines:
    """InfluxDB 1.x HTTP ``/write`` (ns precision), as ingest's v1 writer speaks it."""

    def __init__(self, url: str, database: str, user: str, password: str, timeout: float) -> None:
        self._database = database
        self._auth = (user, password) if user else None
        self._http = httpx.Client(base_url=url, timeout=timeout)

    def write(self, lines: list[str]) -> None:
        """Raises ``httpx.HTTPError`` (network, or an answer other than 204)."""
        if not lines:
            return
        response = self._http.post(
            "/write",
            params={"db": self._database, "precision": "ns"},
            content="\n".join(lines).encode(),
            auth=self._auth,  # type: ignore[arg-type]
        )
        response.raise_for_status()

    def close(self) -> None:
        self._http.close()


class CentreFacts:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        influx: InfluxLines,
        interval_s: float,
        *,
        history_days: int = 7,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._sessions = sessions
        self._influx = influx
        self._interval_s = interval_s
        self._history_days = history_days
        self._clock = clock
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._solar_written: dict[str, tuple[tuple[float, float, float, float], set[int]]] = {}
        self._failing = False
        self.rounds = 0
        self._thread = threading.Thread(target=self._run, name="centre-facts", daemon=True)

    # --- change detection (runs in whichever thread commits) -----------------------------
    def watch(self) -> None:
        """Wake the writer after every commit that touched a centre or a device."""
        event.listen(self._sessions, "before_flush", self._on_flush)
        event.listen(self._sessions, "do_orm_execute", self._on_execute)
        event.listen(self._sessions, "after_commit", self._on_commit)

    def unwatch(self) -> None:
        event.remove(self._sessions, "before_flush", self._on_flush)
        event.remove(self._sessions, "do_orm_execute", self._on_execute)
        event.remove(self._sessions, "after_commit", self._on_commit)

    def _on_flush(self, session: Session, _context: Any, _instances: Any) -> None:
        touched: Iterable[object] = (*session.new, *session.dirty, *session.deleted)
        if any(isinstance(obj, Centre | Device) for obj in touched):
            session.info["centre_facts_changed"] = True

    def _on_execute(self, state: ORMExecuteState) -> None:
        mapper = state.bind_mapper
        writes = state.is_update or state.is_delete
        if writes and mapper is not None and mapper.class_ in (Centre, Device):
            state.session.info["centre_facts_changed"] = True

    def _on_commit(self, session: Session) -> None:
        if session.info.pop("centre_facts_changed", False):
            self._wake.set()

    # --- the writer ----------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            try:
                self.write_once()
            except Exception:  # the outermost loop: log, keep the API up, try next round
                log.exception("event=centre_facts_error")
            self._wake.wait(self._interval_s)
            self._stop.wait(MIN_GAP_S)

    def write_once(self) -> int:
        """Write every centre's point (and the solar days not yet written); lines written."""
        with self._sessions() as session:
            facts = read_facts(session)
        now = self._clock()
        lines = [centre_line(fact, int(now * 1e9)) for fact in facts]
        pending: list[tuple[str, int]] = []
        for fact in facts:
            key = fact.solar_key()
            if key is None:
                continue
            known_key, days = self._solar_written.get(fact.id, (key, set()))
            if known_key != key:
                days = set()
            today = local_day_start_s(now, fact.utc_offset_h)
            for back in range(-1, self._history_days + 1):
                day = today - back * DAY_S
                if day not in days:
                    lines.extend(solar_lines(fact, day))
                    pending.append((fact.id, day))
            self._solar_written[fact.id] = (key, days)
        try:
            self._influx.write(lines)
        except httpx.HTTPError as exc:
            if not self._failing:
                log.warning("event=centre_facts_write_failed error=%s", str(exc)[:200])
            self._failing = True
            return 0
        if self._failing:
            log.info("event=centre_facts_write_resumed")
            self._failing = False
        for centre, day in pending:
            self._solar_written[centre][1].add(day)
        self.rounds += 1
        return len(lines)
