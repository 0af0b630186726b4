"""Charging sessions: who owns them, what gets recorded, what the driver sees live.

- :class:`SessionOwners`: the gateway registers ``session id -> driver`` *before*
  it sends ``start``, so the session is attributed the moment the station opens it.
- :class:`SessionRecorder` (a listener, on its own subscriber actor's thread) is
  the only writer of session rows: opened and closed from the EVSE's effects,
  progress (energy, peak power) written at most every ``progress_every_s``.
- :class:`LiveFeed` (another listener) turns EVSE changes into live events: a
  public ``evse`` event for every change, and a ``session`` event to the driver
  whose session it is.
- :class:`Notifier` stores a driver's notification and pushes it live.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from actors.dashboard import EvseListener
from actors.evse_state import EvseState, SessionClosed, SessionOpened, StateChanged
from actors.live import LiveHub
from actors.messages import EvseChanged, OperatorAlert, StationChanged

__all__ = [
    "LiveFeed",
    "Notifier",
    "SessionOwner",
    "SessionOwners",
    "SessionRecorder",
    "evse_summary",
]

log = logging.getLogger(__name__)


def _now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionOwner:
    session_id: str
    driver_id: str | None
    reservation_id: str | None = None
    target_soc: float | None = None


class SessionOwners:
    """Thread-safe ``session id -> owner``; written by the gateway, read by listeners.

    Entries of sessions that never opened (a start that timed out and never happened)
    would pile up, so entries older than ``keep_s`` are dropped; the stored session row
    (``lookup``) answers for long sessions after that.
    """

    def __init__(
        self,
        lookup: Callable[[str], str | None] | None = None,
        *,
        keep_s: float = 6 * 3600,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._lock = threading.Lock()
        self._owners: dict[str, tuple[SessionOwner, float]] = {}
        self._lookup = lookup
        self._keep_s = keep_s
        self._monotonic = monotonic

    def expect(self, owner: SessionOwner) -> None:
        now = self._monotonic()
        with self._lock:
            self._owners[owner.session_id] = (owner, now)
            oldest = next(iter(self._owners.values()))[1]
            if now - oldest > self._keep_s:
                self._owners = {k: v for k, v in self._owners.items() if now - v[1] <= self._keep_s}

    def get(self, session_id: str) -> SessionOwner | None:
        with self._lock:
            found = self._owners.get(session_id)
        return None if found is None else found[0]

    def driver_of(self, session_id: str | None) -> str | None:
        """The driver of a session, from memory or (after a restart) from storage."""
        if session_id is None:
            return None
        owner = self.get(session_id)
        if owner is not None:
            return owner.driver_id
        return self._lookup(session_id) if self._lookup is not None else None

    def forget(self, session_id: str) -> None:
        with self._lock:
            self._owners.pop(session_id, None)


def evse_summary(state: EvseState) -> dict[str, Any]:
    """The live view of an EVSE, as pushed to browsers (no driver identities)."""
    return {
        "id": state.evse_id,
        "station_id": state.station_id,
        "status": str(state.status),
        "soc": None if state.soc is None else round(state.soc, 1),
        "power_w": round(state.power_w),
        "energy_wh": round(state.energy_wh, 1),
        "session_energy_wh": round(state.session_energy_wh, 1),
        "maintenance": state.maintenance,
        "maintenance_pending": state.maintenance_pending,
        "session_open": state.session_open,
    }


class Notifier:
    """Stores a driver's notification and pushes it live; operator alerts go live only."""

    def __init__(self, store: Any, hub: LiveHub, clock_ms: Callable[[], int] = _now_ms) -> None:
        self._store = store
        self._hub = hub
        self._clock_ms = clock_ms

    def notify(
        self, user_id: str, kind: str, message: str, data: dict[str, Any] | None = None
    ) -> None:
        at = self._clock_ms()
        payload = {"kind": kind, "message": message, "data": data or {}, "created_at": at}
        if self._store is not None:
            try:
                note = self._store.add(user_id, kind, message, data or {}, at=at)
                payload["id"] = note.id
            except Exception:
                log.exception("could not store a notification for %s", user_id)
        self._hub.publish("notification", payload, user_id=user_id)

    def alert_operators(self, kind: str, message: str, data: dict[str, Any] | None = None) -> None:
        self._hub.publish(
            "alert",
            {"kind": kind, "message": message, "data": data or {}, "created_at": self._clock_ms()},
        )


class SessionRecorder(EvseListener):
    """Writes session rows from EVSE effects; notifies the driver when a session opens/ends."""

    def __init__(
        self,
        sessions: Any,
        owners: SessionOwners,
        notifier: Notifier,
        *,
        clock_ms: Callable[[], int] = _now_ms,
        progress_every_s: float = 2.0,
        monotonic: Callable[[], float] = time.monotonic,
        resumed: Iterable[EvseState] = (),
    ) -> None:
        """``resumed``: the last known states the CSMS restarts from (see :meth:`attached`)."""
        self._resumed = tuple(resumed)
        self._sessions = sessions
        self._owners = owners
        self._notifier = notifier
        self._clock_ms = clock_ms
        self._every = progress_every_s
        self._monotonic = monotonic
        self._last_write: dict[str, float] = {}
        self._peak: dict[str, float] = {}

    def attached(self, subscriber: Any) -> None:
        """Before any event after a restart: a session open in a resumed state gets its row.

        The state recorder and this recorder write on different threads, so a crash may
        leave a stored state that shows a session whose row was not written yet; the rebuilt
        state will not open it again, so open it here (idempotent: a known row is kept).
        """
        for state in self._resumed:
            sid = state.session_id
            if state.session_open and sid is not None and self._sessions.get(sid) is None:
                log.warning("recording session %s, found open after a restart", sid)
                self._opened(state, SessionOpened(session_id=sid, energy_wh=state.energy_wh))
        self._close_orphans()
        self._resumed = ()

    def _close_orphans(self) -> None:
        """Close rows left open whose EVSE is known to run no such session any more.

        The CSMS may die after saving an EVSE as ``Available`` but before closing the
        session row; that row would stay open for ever. Only EVSEs with a resumed
        state are judged (an unknown EVSE proves nothing), and the row keeps the energy
        it had recorded.
        """
        if not self._resumed:
            return
        running = {s.evse_id: s.session_id for s in self._resumed if s.session_open}
        known = {s.evse_id for s in self._resumed}
        for row in self._sessions.open_sessions():
            if row.evse_id in known and running.get(row.evse_id) != row.id:
                log.warning(
                    "closing session %s: %s runs no such session after a restart",
                    row.id,
                    row.evse_id,
                )
                self._sessions.close(
                    row.id, ended_at=self._clock_ms(), energy_wh=row.energy_wh, end_reason="Other"
                )

    def evse_changed(self, event: EvseChanged) -> None:
        state = event.state
        status_changed = False
        for effect in event.effects:
            if isinstance(effect, SessionOpened):
                self._opened(state, effect)
            elif isinstance(effect, SessionClosed):
                self._closed(state, effect)
            elif isinstance(effect, StateChanged):
                status_changed |= effect.before.status != effect.after.status
        if state.session_open and state.session_id is not None:
            self._progress(state, write_now=status_changed)

    def _opened(self, state: EvseState, effect: SessionOpened) -> None:
        owner = self._owners.get(effect.session_id)
        driver = owner.driver_id if owner else None
        self._peak[effect.session_id] = state.power_w
        self._sessions.open(
            session_id=effect.session_id,
            driver_id=driver,
            evse_id=state.evse_id,
            station_id=state.station_id,
            started_at=self._clock_ms(),
            start_energy_wh=max(0.0, state.energy_wh - state.session_energy_wh),
            target_soc=owner.target_soc if owner else state.target_soc,
            reservation_id=owner.reservation_id if owner else None,
        )
        if driver:
            self._notifier.notify(
                driver,
                "session_started",
                f"Charging started at {state.evse_id}",
                {"session_id": effect.session_id, "evse_id": state.evse_id},
            )

    def _closed(self, state: EvseState, effect: SessionClosed) -> None:
        sid = effect.session_id
        peak = self._peak.pop(sid, 0.0)
        self._last_write.pop(sid, None)
        reason = str(effect.reason) if effect.reason else "Other"
        self._sessions.update_progress(sid, effect.session_energy_wh, peak)
        closed = self._sessions.close(
            sid, ended_at=self._clock_ms(), energy_wh=effect.session_energy_wh, end_reason=reason
        )
        driver = self._owners.driver_of(sid)
        self._owners.forget(sid)
        if closed and driver:
            kwh = effect.session_energy_wh / 1000
            self._notifier.notify(
                driver,
                "session_ended",
                f"Charging at {state.evse_id} finished: {kwh:.2f} kWh ({reason})",
                {
                    "session_id": sid,
                    "evse_id": state.evse_id,
                    "energy_wh": round(effect.session_energy_wh, 1),
                    "reason": reason,
                },
            )

    def _progress(self, state: EvseState, *, write_now: bool = False) -> None:
        """At most every ``progress_every_s``, and at once on a status change (say, the
        station going offline: its last energy must not wait for a report that may never
        come)."""
        sid = state.session_id
        assert sid is not None
        self._peak[sid] = max(self._peak.get(sid, 0.0), state.power_w)
        now = self._monotonic()
        if not write_now and now - self._last_write.get(sid, float("-inf")) < self._every:
            return
        self._last_write[sid] = now
        self._sessions.update_progress(sid, state.session_energy_wh, self._peak[sid])


class LiveFeed(EvseListener):
    """EVSE changes, station changes and operator alerts, pushed to the live streams."""

    def __init__(self, hub: LiveHub, owners: SessionOwners) -> None:
        self._hub = hub
        self._owners = owners

    def evse_changed(self, event: EvseChanged) -> None:
        state = event.state
        summary = evse_summary(state)
        self._hub.publish("evse", summary, public=True)
        if state.session_id is not None:
            driver = self._owners.driver_of(state.session_id)
            if driver is not None:
                self._hub.publish(
                    "session",
                    {**summary, "session_id": state.session_id, "target_soc": state.target_soc},
                    user_id=driver,
                )

    def station_changed(self, event: StationChanged) -> None:
        self._hub.publish("station", {"id": event.station.id, "online": event.online}, public=True)

    def operator_alert(self, alert: OperatorAlert) -> None:
        self._hub.publish(
            "alert",
            {
                "kind": alert.kind,
                "message": alert.message,
                "evse_id": alert.evse_id,
                "station_id": alert.station_id,
                "created_at": alert.ts,
            },
        )
