"""SessionRecorder: the only writer of session rows, and the driver's session notifications.

A listener on the storage :class:`~actors.listeners.ListenerHost`: sessions are
opened and closed from the EVSE's effects, progress (energy, peak power) is written at most
every ``progress_every_s``, and the writes of one batch of events go out together, in one
transaction, before the notifications they produced are pushed. After a restart it also
reconciles the rows with the last known states (:meth:`SessionRecorder.started`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from functools import partial
from typing import Any

from actors.evse_state import EvseState
from actors.evse_transition import SessionClosed, SessionOpened, StateChanged
from actors.listeners import EvseListener
from actors.messages import EvseChanged
from actors.notifier import DriverNote, Notifier
from actors.session_owners import SessionOwner, SessionOwners
from protocol import EvseStatus
from storage.protocols import Sessions

__all__ = ["SessionRecorder"]

log = logging.getLogger(__name__)


def _now_ms() -> int:
    return int(time.time() * 1000)


class SessionRecorder(EvseListener):
    """Writes session rows from EVSE effects; notifies the driver when a session opens/ends.

    Events only decide what to write (on the subscriber's thread, in order); the writes
    wait for :meth:`batch_done`, which runs them in one ``transaction`` and then pushes
    the notifications they produced. A transaction per write (six per charging session:
    open, progress, peak and close, two notifications) cost ~4 ms of CPU per session,
    taken from the request threads under the GIL; one per batch, ~0.8 ms.
    """

    def __init__(
        self,
        sessions: Sessions,
        owners: SessionOwners,
        notifier: Notifier,
        *,
        clock_ms: Callable[[], int] = _now_ms,
        progress_every_s: float = 2.0,
        monotonic: Callable[[], float] = time.monotonic,
        resumed: Iterable[EvseState] = (),
        transaction: Callable[[], AbstractContextManager[Any]] | None = None,
    ) -> None:
        """``resumed``: the last known states the CSMS restarts from (see :meth:`started`).

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
        self._unsure: dict[str, str] = {}
        """EVSE id -> an open session that the EVSE's next report will judge (a restart)."""

    def started(self) -> None:
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
        """Judge rows left open whose EVSE's saved state does not run that session.

        The CSMS may die after saving an EVSE as ``Available`` but before closing the
        session row; that row would stay open for ever. But the two recorders write on
        different threads and race the other way too: this one may have opened the row
        (Charging) while the saved state still says ``Preparing`` that session, or even
        ``Available`` from before it. So the saved state decides nothing: such a row waits
        for the station's first report after the restart (:meth:`_judge_unsure`), which
        closes it (keeping the energy it had recorded) unless the station still charges it.
        Only EVSEs with a resumed state are judged (an unknown EVSE proves nothing); a
        second such row of one EVSE is closed at once (an EVSE runs one session).
        """
        if not self._resumed:
            return
        # keyed by str: a stored row's evse_id is a plain str
        running: dict[str, str | None] = {
            s.evse_id: s.session_id for s in self._resumed if s.session_open
        }
        starting: dict[str, str | None] = {
            s.evse_id: s.session_id for s in self._resumed if _preparing(s)
        }
        known = {s.evse_id for s in self._resumed}
        for row in self._sessions.open_sessions():
            if row.evse_id not in known or running.get(row.evse_id) == row.id:
                continue
            if starting.get(row.evse_id) == row.id or row.evse_id not in self._unsure:
                previous = self._unsure.get(row.evse_id)
                self._unsure[row.evse_id] = row.id
                if previous is None:
                    continue
                row_id = previous  # the other one of two: close it
            else:
                row_id = row.id
            log.warning(
                "closing session %s: %s cannot run two sessions after a restart",
                row_id,
                row.evse_id,
            )
            self._writes.append(partial(self._write_close_unseen, row_id, self._clock_ms()))

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
        if self._unsure:
            self._judge_unsure(state)

    def _judge_unsure(self, state: EvseState) -> None:
        """The first report after a restart of an EVSE whose session row is unsure: still
        charging it, the row stays open; it ended while the CSMS was down, the report's own
        effects close it (queued before this), else it closes here, keeping its energy."""
        sid = self._unsure.get(state.evse_id)
        if sid is None or state.status is EvseStatus.OFFLINE:
            return
        if state.session_id == sid and state.status is EvseStatus.PREPARING:
            return
        del self._unsure[state.evse_id]
        if state.session_id == sid and state.session_open:
            return
        log.warning(
            "closing session %s: %s reports no such session after a restart", sid, state.evse_id
        )
        self._writes.append(partial(self._write_close_unseen, sid, self._clock_ms()))

    def _write_close_unseen(self, session_id: str, at: int) -> None:
        self._sessions.close(session_id, ended_at=at, energy_wh=0.0, end_reason="Other")

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

    def stopped(self) -> None:
        self.batch_done()

    def _opened(self, state: EvseState, effect: SessionOpened) -> None:
        owner = self._owners.get(effect.session_id)
        if owner is None:  # not started by the CSMS: a driver's badge at an OCPP charger?
            driver = self._owners.driver_of(effect.session_id)
            if driver is not None:
                owner = SessionOwner(
                    session_id=effect.session_id, driver_id=driver, evse_id=state.evse_id
                )
                self._owners.expect(owner)  # counted as the driver's from now on
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


def _preparing(state: EvseState) -> bool:
    """Preparing, or offline from there."""
    effective = state.status_before_offline if state.status is EvseStatus.OFFLINE else state.status
    return effective is EvseStatus.PREPARING
