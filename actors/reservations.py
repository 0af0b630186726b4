"""ReservationActor: the reservation count of every EVSE.

A reservation holds an EVSE for one driver for a while (the station shows
``Reserved``). The count ends when that driver starts charging there (``used``),
runs out (``expired``: the station is told to cancel, the driver notified), or
is cancelled by the driver. It is *interrupted*, and the driver told why, when
the EVSE goes busy with someone else's session, into maintenance, offline or
faulted. This actor is the only writer of reservation rows; everything runs on
its own thread, the expiry timer (on the CSMS clock, :mod:`actors.clock`) only ``tell``s it.
On expiry the station is told to cancel with a command ``tell``; its outcome comes back
as a :class:`StationCancelDone` message, so the count never waits on a station.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from dataclasses import dataclass
from typing import Any

import pykka

from actors.clock import Clock, TimerHandle
from actors.commands import Commands, NotifyingFuture
from actors.evse_state import SESSION_STATUSES, EvseState
from actors.fleet_view import FleetView
from actors.inbox import LeanThreadingActor
from actors.messages import EvseChanged, EvseChangedBatch, InboundReady
from actors.notifier import Notifier
from actors.session_owners import SessionOwners
from protocol import CancelReservationArgs, EvseStatus
from storage.errors import SmartchargeError
from storage.protocols import Reservations

__all__ = [
    "ExpireReservation",
    "GetReservation",
    "ReleaseReservation",
    "Reservation",
    "ReservationActor",
    "StationCancelDone",
    "TrackReservation",
]

log = logging.getLogger(__name__)

S = EvseStatus


@dataclass(frozen=True, slots=True, kw_only=True)
class Reservation:
    id: str
    driver_id: str
    evse_id: str
    created_at: int
    expires_at: int

    def public(self, now_ms: int) -> dict[str, Any]:
        return {
            "id": self.id,
            "expires_at": self.expires_at,
            "remaining_s": max(0.0, round((self.expires_at - now_ms) / 1000, 1)),
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class TrackReservation:
    """The station accepted ``reserve``: start counting."""

    reservation: Reservation


@dataclass(frozen=True, slots=True, kw_only=True)
class ReleaseReservation:
    """End a reservation now (cancelled by its driver, or interrupted by the CSMS)."""

    evse_id: str
    outcome: str
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ExpireReservation:
    reservation_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class GetReservation:
    evse_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class StationCancelDone:
    """The station answered the cancel of an expired reservation (``reply`` is complete)."""

    evse_id: str
    reservation_id: str
    reply: pykka.Future[Any]


_INTERRUPTIONS = {
    S.UNAVAILABLE: ("maintenance", "{evse} went into maintenance"),
    S.OFFLINE: ("offline", "the station of {evse} went offline"),
    S.FAULTED: ("faulted", "{evse} reported a fault"),
}


class ReservationActor(LeanThreadingActor):
    """Counts every reservation down; interrupts, expires and records them."""

    def __init__(
        self,
        *,
        store: Reservations | None,
        notifier: Notifier,
        owners: SessionOwners,
        clock: Clock,
        view: FleetView,
        commands: Commands,
    ) -> None:
        """``commands``: how the station of an expired reservation is told to cancel it."""
        super().__init__()
        self._store = store
        self._notifier = notifier
        self._owners = owners
        self._clock = clock
        self._view = view
        self._commands = commands
        self._active: dict[str, Reservation] = {}
        self._timer: dict[str, TimerHandle] = {}

    def on_start(self) -> None:
        """Resume the counts that were running when the CSMS stopped."""
        if self._store is None:
            return
        for row in self._store.active():
            self._track(
                Reservation(
                    id=row.id,
                    driver_id=row.driver_id,
                    evse_id=row.evse_id,
                    created_at=row.created_at,
                    expires_at=row.expires_at,
                ),
                store=False,
            )

    def on_receive(self, message: Any) -> Any:
        """Runs on the reservation actor's thread."""
        match message:
            case InboundReady(inbox=inbox):  # the EVSE actors' shared inbox: one burst
                for item in inbox.take():
                    self.on_receive(item)
            case EvseChangedBatch(events=events):
                for event in events:
                    self._evse_changed(event.state)
            case EvseChanged(state=state):
                self._evse_changed(state)
            case TrackReservation(reservation=reservation):
                self._track(reservation, store=True)
            case ReleaseReservation(evse_id=evse_id, outcome=outcome, reason=reason):
                return self._finish(evse_id, outcome, reason)
            case ExpireReservation(reservation_id=rid):
                self._expire(rid)
            case GetReservation(evse_id=evse_id):
                return self._active.get(evse_id)
            case StationCancelDone():
                self._station_cancelled(message)
            case _:
                pass  # station/alert events are not for us
        return None

    # ------------------------------------------------------------------ counting

    def _track(self, reservation: Reservation, *, store: bool) -> None:
        if store and self._store is not None:
            self._store.create(
                reservation_id=reservation.id,
                driver_id=reservation.driver_id,
                evse_id=reservation.evse_id,
                created_at=reservation.created_at,
                expires_at=reservation.expires_at,
            )
        self._active[reservation.evse_id] = reservation
        self._view.put_reservation(reservation.evse_id, reservation)
        delay = max(0.0, (reservation.expires_at - self._clock.time_ms()) / 1000)
        ref = self.actor_ref
        self._timer[reservation.id] = self._clock.call_later(
            delay, lambda: _tell(ref, ExpireReservation(reservation_id=reservation.id))
        )
        log.info(
            "Count on %s started for %s (%.0f s)", reservation.evse_id, reservation.driver_id, delay
        )

    def _finish(self, evse_id: str, outcome: str, reason: str) -> Reservation | None:
        reservation = self._active.pop(evse_id, None)
        if reservation is None:
            return None
        timer = self._timer.pop(reservation.id, None)
        if timer is not None:
            timer.cancel()
        self._view.put_reservation(evse_id, None)
        if self._store is not None:
            self._store.finish(
                reservation.id, at=self._clock.time_ms(), outcome=outcome, reason=reason
            )
        data = {
            "reservation_id": reservation.id,
            "evse_id": evse_id,
            "outcome": outcome,
            "reason": reason,
        }
        if outcome == "interrupted":
            log.info("Count on %s has been interrupted: %s", evse_id, reason)
            self._notifier.alert_operators(
                "reservation_interrupted",
                f"A reservation of {evse_id} was interrupted: {reason}",
                {"evse_id": evse_id, "reason": reason},
            )
            self._notifier.notify(
                reservation.driver_id,
                "reservation_interrupted",
                f"Your reservation of {evse_id} was interrupted: {reason}",
                data,
            )
        elif outcome == "expired":
            self._notifier.notify(
                reservation.driver_id,
                "reservation_expired",
                f"Your reservation of {evse_id} has expired",
                data,
            )
        return reservation

    def _expire(self, reservation_id: str) -> None:
        for evse_id, reservation in list(self._active.items()):
            if reservation.id == reservation_id:
                self._finish(evse_id, "expired", "the reservation time ran out")
                self._cancel_at_station(evse_id, reservation_id)

    def _cancel_at_station(self, evse_id: str, reservation_id: str) -> None:
        """Tell the EVSE actor to cancel; the outcome comes back as :class:`StationCancelDone`."""
        ref = self.actor_ref
        reply: NotifyingFuture[Any] = NotifyingFuture(
            functools.partial(_tell_done, ref, evse_id, reservation_id)
        )
        try:
            self._commands.send(
                evse_id,
                CancelReservationArgs(reservation_id=reservation_id),
                reply=reply,
                ask_supervisor=False,
            )
        except SmartchargeError as exc:
            log.warning("could not cancel reservation %s at %s: %s", reservation_id, evse_id, exc)

    def _station_cancelled(self, done: StationCancelDone) -> None:
        try:
            outcome = done.reply.get(timeout=0)
        except SmartchargeError as exc:
            reason = str(exc)
        else:
            if outcome.accepted:
                log.info("Station cancelled the expired reservation on %s", done.evse_id)
                return
            reason = f"the station refused: {outcome.reason}"
        log.warning(
            "could not cancel reservation %s at %s: %s", done.reservation_id, done.evse_id, reason
        )

    def _evse_changed(self, state: EvseState) -> None:
        reservation = self._active.get(state.evse_id)
        if reservation is None:
            return
        evse = state.evse_id
        if state.status in SESSION_STATUSES or state.status is S.PREPARING:
            driver = self._owners.driver_of(state.session_id)
            if driver == reservation.driver_id:
                self._finish(evse, "used", "charging started")
            elif state.session_id is not None:
                self._finish(evse, "interrupted", f"someone else started charging at {evse}")
            return
        if state.maintenance or state.maintenance_pending:
            self._finish(evse, "interrupted", f"{evse} went into maintenance")
            return
        interruption = _INTERRUPTIONS.get(state.status)
        if interruption is not None:
            self._finish(evse, "interrupted", interruption[1].format(evse=evse))


def _tell_done(
    ref: pykka.ActorRef[Any], evse_id: str, reservation_id: str, reply: pykka.Future[Any]
) -> None:
    """Runs on the EVSE actor's thread, when it completes the cancel's future."""
    _tell(ref, StationCancelDone(evse_id=evse_id, reservation_id=reservation_id, reply=reply))


def _tell(ref: pykka.ActorRef[Any], message: Any) -> None:
    """Runs on the timer thread."""
    with contextlib.suppress(pykka.ActorDeadError):
        ref.tell(message)
