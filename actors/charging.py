"""ChargingService: what a driver or an operator may do to an EVSE, and the rules.

Runs on the caller's thread (a gateway request thread, an admin script); it only
``ask``s actors at the edge, with time-outs. It decides *who may*: a driver may
stop only their own session and cancel only their own reservation; an operator
may do anything. The station decides *what can*: its refusals come back as
:class:`Conflict` with the station's reason.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import pykka

from actors.errors import CommandTimeoutError, SmartchargeError, UnknownEvseError
from actors.messages import CommandOutcome
from actors.reservations import (
    GetReservation,
    ReleaseReservation,
    Reservation,
    TrackReservation,
)
from actors.session_owners import SessionOwner, SessionOwners
from protocol import (
    CancelReservationArgs,
    CommandName,
    EvseStatus,
    MaintenanceArgs,
    ReserveArgs,
    SessionId,
    StartArgs,
    StopArgs,
)

if TYPE_CHECKING:
    from actors.system import Csms

__all__ = ["Caller", "ChargingService", "Conflict", "Forbidden", "NotFound"]

ASK_TIMEOUT_S = 5.0


class Conflict(SmartchargeError):
    """The EVSE or its station refuses what was asked (HTTP 409), with the reason."""


class Forbidden(SmartchargeError):
    """The caller may not do this (HTTP 403)."""


class NotFound(SmartchargeError, LookupError):
    """Nothing of the caller's there (HTTP 404): also what another driver's things look like."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Caller:
    user_id: str
    operator: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Started:
    session_id: str
    outcome: CommandOutcome


class ChargingService:
    """Reservations, start/stop, maintenance and live info, with their permission rules."""

    def __init__(
        self,
        csms: Csms,
        *,
        reservations: Callable[[], pykka.ActorRef[Any]],
        owners: SessionOwners,
        reservation_s: float = 900.0,
        clock_ms: Callable[[], int] | None = None,
        new_id: Callable[[], str] = lambda: uuid.uuid4().hex,
    ) -> None:
        self._csms = csms
        self._reservations_ref = reservations
        self._owners = owners
        self.reservation_s = reservation_s
        self._clock_ms = clock_ms or (lambda: int(time.time() * 1000))
        self._new_id = new_id

    # ------------------------------------------------------------------ reservations

    def reservation(self, evse_id: str) -> Reservation | None:
        found = self._reservations_ref().ask(GetReservation(evse_id=evse_id), timeout=ASK_TIMEOUT_S)
        return cast(Reservation | None, found)

    def reserve(self, caller: Caller, evse_id: str, duration_s: float | None = None) -> Reservation:
        state = self._state(evse_id)
        if state.status is not EvseStatus.AVAILABLE:
            raise Conflict(f"EVSE {evse_id} is {state.status}, not Available")
        if self.reservation(evse_id) is not None:
            raise Conflict(f"EVSE {evse_id} is already reserved")
        now = self._clock_ms()
        duration = duration_s if duration_s is not None else self.reservation_s
        reservation = Reservation(
            id=self._new_id(),
            driver_id=caller.user_id,
            evse_id=evse_id,
            created_at=now,
            expires_at=now + int(duration * 1000),
        )
        outcome = self._csms.command(
            evse_id,
            CommandName.RESERVE,
            ReserveArgs(reservation_id=reservation.id, expires_at=reservation.expires_at),
        )
        if not outcome.accepted:
            raise Conflict(f"the station refused the reservation: {outcome.reason}")
        self._reservations_ref().ask(
            TrackReservation(reservation=reservation), timeout=ASK_TIMEOUT_S
        )
        return reservation

    def cancel_reservation(self, caller: Caller, evse_id: str) -> Reservation:
        current = self.reservation(evse_id)
        if current is None or (current.driver_id != caller.user_id and not caller.operator):
            raise NotFound(f"you hold no reservation on {evse_id}")
        reason = (
            "cancelled by its driver"
            if current.driver_id == caller.user_id
            else "cancelled by an operator"
        )
        self._release(evse_id, "cancelled", reason, current)
        return current

    def _release(self, evse_id: str, outcome: str, reason: str, current: Reservation) -> None:
        self._reservations_ref().ask(
            ReleaseReservation(evse_id=evse_id, outcome=outcome, reason=reason),
            timeout=ASK_TIMEOUT_S,
        )
        self._csms.command(
            evse_id,
            CommandName.CANCEL_RESERVATION,
            CancelReservationArgs(reservation_id=current.id),
        )

    # ------------------------------------------------------------------ sessions

    def start(self, caller: Caller, evse_id: str, target_soc: float | None = None) -> Started:
        self._state(evse_id)
        current = self.reservation(evse_id)
        reservation_id = None
        if current is not None and current.driver_id == caller.user_id:
            reservation_id = current.id
        elif current is not None:
            self._release(
                evse_id, "interrupted", f"someone else started charging at {evse_id}", current
            )
        session_id = self._new_id()
        self._owners.expect(
            SessionOwner(
                session_id=session_id,
                driver_id=caller.user_id,
                reservation_id=reservation_id,
                target_soc=target_soc,
            )
        )
        try:
            outcome = self._csms.command(
                evse_id,
                CommandName.START,
                StartArgs(
                    session_id=SessionId(session_id),
                    target_soc=target_soc,
                    reservation_id=reservation_id,
                ),
            )
        except CommandTimeoutError as exc:
            # The driver is told it did not start, and it will not: the command expires at
            # the station, and should the station report this session anyway, its EVSE
            # actor stops it. Nobody owns it, so nobody is charged for it.
            self._owners.forget(session_id)
            raise CommandTimeoutError(f"{exc}; nothing was started") from None
        except SmartchargeError:
            self._owners.forget(session_id)
            raise
        if not outcome.accepted:
            self._owners.forget(session_id)
            raise Conflict(f"the station refused to start: {outcome.reason}")
        return Started(session_id=session_id, outcome=outcome)

    def stop(self, caller: Caller, evse_id: str) -> CommandOutcome:
        state = self._state(evse_id)
        session_id = state.session_id
        running = state.session_open or state.status is EvseStatus.PREPARING
        if session_id is None or not running:
            if caller.operator:
                raise Conflict(f"no session is running on {evse_id}")
            raise NotFound(f"you have no session running on {evse_id}")
        if not caller.operator and self._owners.driver_of(session_id) != caller.user_id:
            raise Forbidden(f"the session on {evse_id} is not yours")
        outcome = self._csms.command(
            evse_id, CommandName.STOP, StopArgs(session_id=SessionId(session_id))
        )
        if not outcome.accepted:
            raise Conflict(f"the station refused to stop: {outcome.reason}")
        return outcome

    # ------------------------------------------------------------------ operators

    def set_maintenance(self, caller: Caller, evse_id: str, enabled: bool) -> CommandOutcome:
        if not caller.operator:
            raise Forbidden("only operators switch maintenance")
        self._state(evse_id)
        outcome = self._csms.command(
            evse_id, CommandName.MAINTENANCE, MaintenanceArgs(enabled=enabled)
        )
        if not outcome.accepted:
            raise Conflict(f"the station refused maintenance: {outcome.reason}")
        return outcome

    def info(self, evse_id: str) -> CommandOutcome:
        """A live ``info`` round trip to the station (not the CSMS's cached view)."""
        self._state(evse_id)
        return self._csms.command(evse_id, CommandName.INFO)

    def _state(self, evse_id: str) -> Any:
        view = self._csms.view.evse(evse_id)
        if view is None:
            raise UnknownEvseError(f"unknown EVSE {evse_id!r}")
        return view.state
