"""FleetView: the read model the gateway reads without asking any actor.

One owner writes each part of it, on one thread: stations and EVSEs are written by
:class:`FleetViewWriter`, a listener on the live :class:`~actors.listeners.ListenerHost`,
from the events every EVSE actor and the supervisor send there (the rows are what those
events say, in the order they arrived); the reservation counts by the reservation actor,
which owns them. Before any actor starts, the composition root seeds it with what the
previous run left (:meth:`FleetView.restore`). Gateway threads read it. Writes replace whole
immutable records under a lock, so a reader always sees a consistent record per EVSE and
never blocks a writer for long.

:meth:`FleetView.nearest` answers from an immutable :class:`actors.geo.GeoIndex` of the
stations' positions. Writers only note which stations were added or moved; the first query
after a change swaps in an updated index (copy-on-write, under its own lock), and EVSE
availability is checked at query time.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from actors.evse_state import EvseState
from actors.geo import GeoIndex, Position
from actors.geo import nearest as geo_nearest
from actors.listeners import EvseListener
from actors.messages import EvseChanged, StationChanged
from protocol import EvseId, EvseStatus, StationDescriptor, StationId, evse_key

__all__ = ["EvseView", "FleetView", "FleetViewWriter", "StationView"]


@dataclass(frozen=True, slots=True, kw_only=True)
class EvseView:
    state: EvseState
    updated_at: float
    """Wall-clock seconds (CSMS clock) when the last report about this EVSE arrived."""
    alert: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class StationView:
    station: StationDescriptor
    online: bool
    updated_at: float
    evses: tuple[EvseView, ...]


MAX_RETIRED_PER_STATION = 256
"""How many retired EVSEs of one station the view remembers (to drop their late changes)."""


class FleetView:
    """Thread-safe snapshot of every station and EVSE the CSMS knows."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._version = 0  # bumped by every write: readers cache on it
        self._stations: dict[StationId, tuple[StationDescriptor, bool, float]] = {}
        self._evses: dict[EvseId, EvseView] = {}
        # Per station: the EVSEs it listed once and no longer does (their late changes are
        # dropped); bounded by MAX_RETIRED_PER_STATION.
        self._retired: dict[StationId, dict[EvseId, None]] = {}
        self._reservations: dict[str, Any] = {}
        # Spatial index: (snapshot, the _geo_version it reflects); replaced, never mutated.
        self._geo: tuple[GeoIndex, int] = (GeoIndex(), 0)
        self._geo_lock = threading.Lock()  # one update at a time; lock order: _geo_lock, _lock
        self._geo_pending: dict[str, Position] = {}  # added/moved since the snapshot, under _lock
        self._geo_version = 0  # bumped under _lock with every change to _geo_pending
        self._reservation_watchers: list[Callable[[str], None]] = []

    def now(self) -> float:
        return self._clock()

    # ------------------------------------------------------------------ writes (one owner)

    def restore(self, stations: Iterable[StationDescriptor], evses: Iterable[EvseView]) -> None:
        """Seed the view before anything runs: what the previous run left, stations offline."""
        for station in stations:
            self.put_station(station, online=False)
        with self._lock:
            for view in evses:
                self._evses[view.state.evse_id] = view
            self._version += 1

    def put_station(self, station: StationDescriptor, online: bool) -> None:
        """A station as it announced itself (or went offline); the rows of EVSEs it no longer
        lists go (retired). Its EVSEs get rows when their actors first report."""
        now = self._clock()
        keys = {evse_key(station.id, e.id) for e in station.evses}
        with self._lock:
            known = self._stations.get(station.id)
            self._stations[station.id] = (station, online, now)
            retired = {k: None for k in self._retired.get(station.id, {}) if k not in keys}
            if known is not None:
                for old in known[0].evses:
                    key = evse_key(station.id, old.id)
                    if key not in keys:
                        self._evses.pop(key, None)
                        retired.pop(key, None)
                        retired[key] = None  # the newest last
            while len(retired) > MAX_RETIRED_PER_STATION:
                del retired[next(iter(retired))]
            if retired:
                self._retired[station.id] = retired
            else:
                self._retired.pop(station.id, None)
            self._version += 1
            if known is None or (known[0].lat, known[0].lon) != (station.lat, station.lon):
                self._geo_pending[station.id] = (station.lat, station.lon)
                self._geo_version += 1

    def put_evse(self, state: EvseState, alert: str | None = None) -> None:
        """An EVSE's new state; ignored for an EVSE its station no longer lists (retired).

        An EVSE the station's last known announcement does not list *yet* is kept: the EVSE
        actors' changes and the supervisor's station changes reach the read model by two
        queues, so a new EVSE's first report can come before the birth that adds it; the
        station's rows show it once that birth is here."""
        view = EvseView(state=state, updated_at=self._clock(), alert=alert)
        with self._lock:
            if state.evse_id not in self._evses:
                retired = self._retired.get(state.station_id)
                if retired is not None and state.evse_id in retired:
                    return  # retired: a late change of its stopped actor
            self._evses[state.evse_id] = view
            self._version += 1

    def put_reservation(self, evse_id: str, reservation: Any) -> None:
        """Written by the reservation actor only (it owns the counts); ``None`` clears it."""
        with self._lock:
            if reservation is None:
                self._reservations.pop(evse_id, None)
            else:
                self._reservations[evse_id] = reservation
            self._version += 1
        for watcher in self._reservation_watchers:
            watcher(evse_id)

    def watch_reservations(self, watcher: Callable[[str], None]) -> None:
        """``watcher(evse_id)`` after each reservation write, on the writer's thread (the node
        publishes them for its gateways: :mod:`actors.node_server`). Add before it runs."""
        self._reservation_watchers.append(watcher)

    # ------------------------------------------------------------------ reads (any thread)

    @property
    def version(self) -> int:
        """Changes whenever anything in the view does (a cache key for whole listings)."""
        return self._version

    def reservations(self) -> dict[str, Any]:
        """Every active reservation count at once (one lock for a whole listing)."""
        with self._lock:
            return dict(self._reservations)

    def reservation(self, evse_id: str) -> Any:
        """The active reservation count of an EVSE, or ``None``."""
        with self._lock:
            return self._reservations.get(evse_id)

    def evse(self, evse_id: str) -> EvseView | None:
        with self._lock:
            return self._evses.get(EvseId(evse_id))

    def evses(self) -> list[EvseView]:
        with self._lock:
            return list(self._evses.values())

    def stations(self) -> list[StationView]:
        with self._lock:
            stations = list(self._stations.values())
            evses = dict(self._evses)
        views = []
        for station, online, updated_at in sorted(stations, key=lambda s: s[0].id):
            members = _members(station, evses)
            views.append(
                StationView(station=station, online=online, updated_at=updated_at, evses=members)
            )
        return views

    def station(self, station_id: str) -> StationView | None:
        for view in self.stations():
            if view.station.id == station_id:
                return view
        return None

    def nearest(
        self, lat: float, lon: float, limit: int, available_only: bool
    ) -> list[tuple[float, StationView, EvseView]]:
        """The ``limit`` EVSEs nearest to ``(lat, lon)`` as ``(distance_km, station, evse)``.

        Ordered by great-circle distance, then EVSE id: exactly what scanning
        :meth:`stations` and sorting would give. ``available_only`` keeps the EVSEs that are
        Available and have no active reservation.
        """

        def accept(key: str) -> list[tuple[str, tuple[StationView, EvseView]]]:
            with self._lock:
                known = self._stations.get(StationId(key))
                if known is None:
                    return []
                station, online, updated_at = known
                evses = self._evses
                members = _members(station, evses)
                if available_only:
                    keep = [
                        m
                        for m in members
                        if m.state.status is EvseStatus.AVAILABLE
                        and self._reservations.get(m.state.evse_id) is None
                    ]
                else:
                    keep = list(members)
            if not keep:
                return []
            view = StationView(station=station, online=online, updated_at=updated_at, evses=members)
            return [(m.state.evse_id, (view, m)) for m in keep]

        found = geo_nearest(self._geo_index(), lat, lon, limit, accept)
        return [(distance, view, evse) for distance, (view, evse) in found]

    def _geo_index(self) -> GeoIndex:
        index, version = self._geo
        if version == self._geo_version:
            return index
        with self._geo_lock:
            with self._lock:
                version, pending = self._geo_version, self._geo_pending
                self._geo_pending = {}
            index = self._geo[0].updated(pending) if pending else self._geo[0]
            self._geo = (index, version)
            return index


def _members(station: StationDescriptor, evses: dict[EvseId, EvseView]) -> tuple[EvseView, ...]:
    """The views of a station's EVSEs, in the station's order (keys: ``station.evse``)."""
    keys = (evse_key(station.id, e.id) for e in station.evses)
    return tuple(evses[k] for k in keys if k in evses)


class FleetViewWriter(EvseListener):
    """The read model's owner: the first listener of the live host (so every listener after
    it, and every browser it tells, reads a view that already holds the event)."""

    def __init__(self, view: FleetView) -> None:
        self._view = view

    def evse_changed(self, event: EvseChanged) -> None:
        self._view.put_evse(event.state, alert=event.alert)

    def station_changed(self, event: StationChanged) -> None:
        self._view.put_station(event.station, event.online)
