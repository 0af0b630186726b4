"""Charging sessions: who owns them, what gets recorded, what the driver sees live.

- :class:`SessionOwners`: the gateway registers ``session id -> driver`` *before*
  it sends ``start``, so the session is attributed the moment the station opens it.
- :class:`SessionRecorder` (a listener, on its own subscriber actor's thread) is
  the only writer of session rows: opened and closed from the EVSE's effects,
  progress (energy, peak power) written at most every ``progress_every_s``; the
  writes of one batch of events go out together, in one transaction.
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
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from actors.dashboard import EvseListener
from actors.evse_state import EvseState, SessionClosed, SessionOpened, StateChanged
from actors.live import LiveHub
from actors.messages import EvseChanged, OperatorAlert, StationChanged

__all__ = [
    "DriverNote",
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

    def __init__(self, store: Any, hub: LiveHub, clock_ms: Callable[[], int] = _now_ms) -> None:
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


class SessionRecorder(EvseListener):
    """Writes session rows from EVSE effects; notifies the driver when a session opens/ends.

    Events only decide what to write (on the subscriber's thread, in order); the writes
    wait for :meth:`batch_done`, which runs them in one ``transaction`` and then pushes
    the notifications they produced. Six transactions per charging session (open, two
    notifications, progress, close) cost ~4 ms of CPU, taken from the request threads
    under the GIL; one per batch, ~0.8 ms.
    """

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
        transaction: Callable[[], AbstractContextManager[Any]] | None = None,
    ) -> None:
        """``resumed``: the last known states the CSMS restarts from (see :meth:`attached`).

        ``transaction``: groups this thread's calls to ``sessions`` and to the notifier's
        store into one transaction (:meth:`storage.Storage.transaction`); without one,
        every write commits on its own.
        """
        self._resumed = tuple(resumed)
        self._transaction = transaction
        self._writes: list[Callable[[], DriverNote | None]] = []
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
        self.batch_done()
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

    def batch_done(self) -> None:
        """Write what the batch's events decided, then push the notifications.

        In one transaction when there is one; the notifications go live after it commits
        (a pushed notification's id is stored). If it fails, the writes are replayed one
        by one, each on its own, as without a transaction: every step is idempotent
        (first open wins, progress only grows, only one close counts), so a bad write
        costs only itself.
        """
        writes, self._writes = self._writes, []
        if not writes:
            return
        if self._transaction is not None:
            try:
                with self._transaction():
                    notes = [note for write in writes if (note := write()) is not None]
                    payloads = [self._notifier.save(note) for note in notes]
            except Exception as exc:
                log.warning("could not write %d session changes at once: %s", len(writes), exc)
            else:
                for note, payload in zip(notes, payloads, strict=True):
                    self._notifier.push(note, payload)
                return
        for write in writes:
            try:
                note = write()
            except Exception:
                log.exception("could not write a session change")
                continue
            if note is not None:
                self._notifier.notify(note.user_id, note.kind, note.message, note.data)

    def detached(self) -> None:
        self.batch_done()

    def _opened(self, state: EvseState, effect: SessionOpened) -> None:
        owner = self._owners.get(effect.session_id)
        self._peak[effect.session_id] = state.power_w
        self._writes.append(
            partial(self._write_open, state, effect.session_id, owner, self._clock_ms())
        )

    def _write_open(
        self, state: EvseState, session_id: str, owner: SessionOwner | None, at: int
    ) -> DriverNote | None:
        driver = owner.driver_id if owner else None
        self._sessions.open(
            session_id=session_id,
            driver_id=driver,
            evse_id=state.evse_id,
            station_id=state.station_id,
            started_at=at,
            start_energy_wh=max(0.0, state.energy_wh - state.session_energy_wh),
            target_soc=owner.target_soc if owner else state.target_soc,
            reservation_id=owner.reservation_id if owner else None,
        )
        if not driver:
            return None
        return DriverNote(
            user_id=driver,
            kind="session_started",
            message=f"Charging started at {state.evse_id}",
            data={"session_id": session_id, "evse_id": state.evse_id},
        )

    def _closed(self, state: EvseState, effect: SessionClosed) -> None:
        sid = effect.session_id
        peak = self._peak.pop(sid, 0.0)
        self._last_write.pop(sid, None)
        driver = self._owners.driver_of(sid)
        self._owners.forget(sid)
        self._writes.append(
            partial(self._write_close, state, effect, peak, driver, self._clock_ms())
        )

    def _write_close(
        self, state: EvseState, effect: SessionClosed, peak: float, driver: str | None, at: int
    ) -> DriverNote | None:
        sid = effect.session_id
        reason = str(effect.reason) if effect.reason else "Other"
        self._sessions.update_progress(sid, effect.session_energy_wh, peak)
        closed = self._sessions.close(
            sid, ended_at=at, energy_wh=effect.session_energy_wh, end_reason=reason
        )
        if not (closed and driver):
            return None
        kwh = effect.session_energy_wh / 1000
        return DriverNote(
            user_id=driver,
            kind="session_ended",
            message=f"Charging at {state.evse_id} finished: {kwh:.2f} kWh ({reason})",
            data={
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
        self._writes.append(
            partial(self._write_progress, sid, state.session_energy_wh, self._peak[sid])
        )

    def _write_progress(self, session_id: str, energy_wh: float, peak_w: float) -> None:
        self._sessions.update_progress(session_id, energy_wh, peak_w)


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
