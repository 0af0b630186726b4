"""Charging sessions: who owns them, what gets recorded, what the driver sees live.

- :class:`SessionOwners`: the gateway registers ``session id -> driver`` *before*
  it sends ``start``, so the session is attributed the moment the station opens it.
- :class:`~actors.session_recorder.SessionRecorder` (its own module) writes the
  session rows.
- :class:`LiveFeed` (another listener) turns EVSE changes into live events: a
  public ``evse`` event for every change, and a ``session`` event to the driver
  whose session it is.
- :class:`Notifier` stores a driver's notification and pushes it live.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from actors.dashboard import EvseListener
from actors.evse_state import EvseState
from actors.live import LiveHub
from actors.messages import EvseChanged, OperatorAlert, StationChanged
from storage.protocols import Notifications

__all__ = [
    "DriverNote",
    "LiveFeed",
    "Notifier",
    "SessionOwner",
    "SessionOwners",
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


_MAX_LOOKED_UP = 10_000
"""Cached storage answers kept by :class:`SessionOwners` (then the cache starts again)."""


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
        lookup_ttl_s: float = 30.0,
    ) -> None:
        """``lookup_ttl_s``: how long a storage answer (also "no driver") is reused: every
        meter value of a session asks, and a query per message costs more than the rest of
        its handling."""
        self._lock = threading.Lock()
        self._owners: dict[str, tuple[SessionOwner, float]] = {}
        self._lookup = lookup
        self._lookup_ttl_s = lookup_ttl_s
        self._looked_up: dict[str, tuple[str | None, float]] = {}
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
        if self._lookup is None:
            return None
        now = self._monotonic()
        with self._lock:
            cached = self._looked_up.get(session_id)
        if cached is not None and now - cached[1] < self._lookup_ttl_s:
            return cached[0]
        driver = self._lookup(session_id)
        with self._lock:
            if len(self._looked_up) >= _MAX_LOOKED_UP:
                self._looked_up.clear()
            self._looked_up[session_id] = (driver, now)
        return driver

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


@dataclass(frozen=True, slots=True, kw_only=True)
class DriverNote:
    """A notification for one driver, not stored or pushed yet."""

    user_id: str
    kind: str
    message: str
    data: dict[str, Any] = field(default_factory=dict)


class Notifier:
    """Stores a driver's notification and pushes it live; operator alerts go live only."""

    def __init__(
        self, store: Notifications | None, hub: LiveHub, clock_ms: Callable[[], int] = _now_ms
    ) -> None:
        self._store = store
        self._hub = hub
        self._clock_ms = clock_ms

    def notify(
        self, user_id: str, kind: str, message: str, data: dict[str, Any] | None = None
    ) -> None:
        """Store and push; a storage error is logged and the note is pushed anyway."""
        note = DriverNote(user_id=user_id, kind=kind, message=message, data=data or {})
        try:
            payload = self.save(note)
        except Exception:
            log.exception("could not store a notification for %s", user_id)
            payload = self._payload(note, self._clock_ms())
        self.push(note, payload)

    def save(self, note: DriverNote) -> dict[str, Any]:
        """Store ``note`` (a storage error propagates); the payload :meth:`push` sends."""
        payload = self._payload(note, self._clock_ms())
        if self._store is not None:
            stored = self._store.add(
                note.user_id, note.kind, note.message, note.data, at=payload["created_at"]
            )
            payload["id"] = stored.id
        return payload

    def push(self, note: DriverNote, payload: dict[str, Any]) -> None:
        self._hub.publish("notification", payload, user_id=note.user_id)

    @staticmethod
    def _payload(note: DriverNote, at: int) -> dict[str, Any]:
        return {"kind": note.kind, "message": note.message, "data": note.data, "created_at": at}

    def alert_operators(self, kind: str, message: str, data: dict[str, Any] | None = None) -> None:
        self._hub.publish(
            "alert",
            {"kind": kind, "message": message, "data": data or {}, "created_at": self._clock_ms()},
        )


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
