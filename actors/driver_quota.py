"""DriverQuota: how much of the fleet one driver may hold at once.

A driver holds at most one active reservation and runs at most ``max_sessions`` sessions;
operators are never counted. Both counts come from the CSMS's own memory, never from
storage: reservations from the :class:`~actors.fleet_view.FleetView` (the reservation
actor writes its counts there), sessions from :class:`~actors.session_owners.SessionOwners`
(the gateway registers every start there before sending it) checked against the view.

Runs on the caller's thread (a gateway request thread). One lock makes check-and-register
atomic, so twelve concurrent starts of one driver cannot all see "none running"; the lock
is held only for memory reads, never across a station round trip.

A session counts while the view shows it running (``Preparing``, or open) on its EVSE,
and, before the view shows it at all, for ``settle_s`` after it was registered: the start
is in flight, or accepted and the station's report is still on its way. A start that fails
or times out is forgotten by :class:`~actors.charging.ChargingService` and stops counting.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from actors.evse_state import EvseState
from actors.fleet_view import FleetView
from actors.session_owners import SessionOwner, SessionOwners
from protocol import EvseStatus
from storage.errors import Conflict

__all__ = ["DriverQuota"]


def _running(state: EvseState) -> bool:
    return state.session_open or state.status is EvseStatus.PREPARING


class DriverQuota:
    """One reservation and ``max_sessions`` running sessions per driver; thread-safe."""

    def __init__(
        self,
        view: FleetView,
        owners: SessionOwners,
        *,
        max_sessions: int,
        monotonic: Callable[[], float],
        settle_s: float = 30.0,
    ) -> None:
        """``settle_s``: how long a registered session counts before the view shows it (longer
        than a command's time-out plus a status report's trip)."""
        if max_sessions < 1:
            raise ValueError("max_sessions must be at least 1")
        self.max_sessions = max_sessions
        self._view = view
        self._owners = owners
        self._monotonic = monotonic
        self._settle_s = settle_s
        self._lock = threading.Lock()
        self._reserving: set[str] = set()

    @contextmanager
    def reserving(self, driver_id: str, *, operator: bool) -> Iterator[None]:
        """Around a reservation: :class:`Conflict` if the driver holds one or is making one;
        the driver's claim ends when the block does (the reservation is then in the view)."""
        if operator:
            yield
            return
        with self._lock:
            if driver_id in self._reserving or self._holds_reservation(driver_id):
                raise Conflict(
                    "you already hold a reservation: use it or cancel it before reserving another"
                )
            self._reserving.add(driver_id)
        try:
            yield
        finally:
            with self._lock:
                self._reserving.discard(driver_id)

    def admit(self, owner: SessionOwner, *, operator: bool) -> None:
        """Register a session about to start, or :class:`Conflict` if its driver is at the
        limit. Operators' sessions are registered without counting."""
        if operator or owner.driver_id is None:
            self._owners.expect(owner)
            return
        with self._lock:
            running = self.running_sessions(owner.driver_id)
            if running >= self.max_sessions:
                raise Conflict(
                    f"you already have {running} session(s) running; a driver may run "
                    f"{self.max_sessions} at once: stop one first"
                )
            self._owners.expect(owner)

    def running_sessions(self, driver_id: str) -> int:
        """The driver's sessions running or starting, from memory."""
        now = self._monotonic()
        count = 0
        for owner, since in self._owners.sessions_of(driver_id):
            view = None if owner.evse_id is None else self._view.evse(owner.evse_id)
            if view is not None and view.state.session_id == owner.session_id:
                count += _running(view.state)
            elif now - since < self._settle_s:
                count += 1  # starting, or started and not in the view yet
        return count

    def _holds_reservation(self, driver_id: str) -> bool:
        return any(
            getattr(r, "driver_id", None) == driver_id for r in self._view.reservations().values()
        )
