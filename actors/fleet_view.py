"""FleetView: the read model the gateway reads without asking any actor.

Only the supervisor writes it (from the events it already receives); gateway
threads read it. Writes replace whole immutable records under a lock, so a
reader always sees a consistent record per EVSE and never blocks an actor.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from actors.evse_state import EvseState
from actors.protocol import EvseId, StationDescriptor, StationId

__all__ = ["EvseView", "FleetView", "StationView"]


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


class FleetView:
    """Thread-safe snapshot of every station and EVSE the CSMS knows."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._stations: dict[StationId, tuple[StationDescriptor, bool, float]] = {}
        self._evses: dict[EvseId, EvseView] = {}

    def now(self) -> float:
        return self._clock()

    # ------------------------------------------------------------------ writes (supervisor)

    def put_station(self, station: StationDescriptor, online: bool) -> None:
        with self._lock:
            self._stations[station.id] = (station, online, self._clock())

    def set_online(self, station_id: StationId, online: bool) -> None:
        with self._lock:
            known = self._stations.get(station_id)
            if known is not None:
                self._stations[station_id] = (known[0], online, self._clock())

    def put_evse(self, state: EvseState, alert: str | None = None) -> None:
        view = EvseView(state=state, updated_at=self._clock(), alert=alert)
        with self._lock:
            self._evses[state.evse_id] = view

    # ------------------------------------------------------------------ reads (any thread)

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
            members = tuple(evses[e.id] for e in station.evses if e.id in evses)
            views.append(
                StationView(station=station, online=online, updated_at=updated_at, evses=members)
            )
        return views

    def station(self, station_id: str) -> StationView | None:
        for view in self.stations():
            if view.station.id == station_id:
                return view
        return None
