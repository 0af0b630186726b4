"""ChargingService: what a driver or an operator may do to an EVSE, and the rules.

Runs on the caller's thread (a gateway request thread, an admin script); it only
``ask``s actors at the edge, with time-outs. It decides *who may*: a driver may
stop only their own session and cancel only their own reservation; an operator
may do anything. A reserved EVSE starts only for its holder (an operator's start
interrupts the reservation); a driver holds one reservation and runs a limited number of
sessions at once (:class:`~actors.driver_quota.DriverQuota`). The station decides *what
can*: its refusals come back as :class:`Conflict` with the station's reason.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, cast

from actors.alert_log import AlertLog
from actors.commands import Commands
from actors.driver_quota import DriverQuota
from actors.evse_state import EvseState
from actors.fleet_view import FleetView
from actors.messages import CommandOutcome
from actors.reservations import (
    GetReservation,
    ReleaseReservation,
    Reservation,
    TrackReservation,
)
from actors.session_owners import SessionOwner, SessionOwners
from actors.slot import ActorSlot
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
from storage.errors import (
    CommandTimeoutError,
    Conflict,
    Forbidden,
    NotFound,
    SmartchargeError,
    UnknownEvseError,
)

__all__ = ["Caller", "Charging", "ChargingService", "Started"]

ASK_TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Caller:
    user_id: str
    operator: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Started:
    session_id: str
    outcome: CommandOutcome


class Charging(Protocol):
    """What the gateway asks of the CSMS: :class:`ChargingService` in the node's process, or
    its remote stand-in in a gateway apart (``gateway/node_client.py``)."""

    def reservation(self, evse_id: str) -> Reservation | None: ...

    def reserve(
        self, caller: Caller, evse_id: str, duration_s: float | None = None
    ) -> Reservation: ...

    def cancel_reservation(self, caller: Caller, evse_id: str) -> Reservation: ...

    def start(self, caller: Caller, evse_id: str, target_soc: float | None = None) -> Started: ...

    def stop(self, caller: Caller, evse_id: str) -> CommandOutcome: ...

    def set_maintenance(self, caller: Caller, evse_id: str, enabled: bool) -> CommandOutcome: ...

    def info(self, evse_id: str) -> CommandOutcome: ...

    def reservation_count(self, evse_id: str) -> Reservation | None: ...

    def session_driver(self, session_id: str) -> str | None: ...


class ChargingService:
    """Reservations, start/stop, maintenance and live info, with their permission rules."""

    def __init__(
        self,
        commands: Commands,
        *,
        view: FleetView,
        reservations: ActorSlot,
        owners: SessionOwners,
        clock_ms: Callable[[], int],
        reservation_s: float = 900.0,
        quota: DriverQuota | None = None,
        new_id: Callable[[], str] = lambda: uuid.uuid4().hex,
        alerts: AlertLog | None = None,
    ) -> None:
        """``commands`` sends to the EVSE actors, ``view`` is read for the EVSE's state, and
        ``reservations`` holds the reservation actor once it runs; ``clock_ms``: the CSMS
        clock's wall time (:mod:`actors.clock`); ``quota``: what one driver may hold at once
        (default: one session, one reservation); ``alerts``: where a maintenance switch is
        logged for the operators."""
        self._commands = commands
        self._view = view
        self._reservations = reservations
        self._owners = owners
        self.reservation_s = reservation_s
        self._clock_ms = clock_ms
        self._new_id = new_id
        self._alerts = alerts
        self.quota = quota or DriverQuota(view, owners, max_sessions=1, monotonic=time.monotonic)

    # ------------------------------------------------------------------ reservations

    def reservation(self, evse_id: str) -> Reservation | None:
        found = self._reservations.get().ask(GetReservation(evse_id=evse_id), timeout=ASK_TIMEOUT_S)
        return cast(Reservation | None, found)

    def reservation_count(self, evse_id: str) -> Reservation | None:
        """The reservation on an EVSE as the read model has it (memory, no ``ask``)."""
        return cast(Reservation | None, self._view.reservation(evse_id))

    def reserve(self, caller: Caller, evse_id: str, duration_s: float | None = None) -> Reservation:
        with self.quota.reserving(caller.user_id, operator=caller.operator):
            return self._reserve(caller, evse_id, duration_s)

    def _reserve(self, caller: Caller, evse_id: str, duration_s: float | None) -> Reservation:
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
        outcome = self._commands.command(
            evse_id,
            CommandName.RESERVE,
            ReserveArgs(reservation_id=reservation.id, expires_at=reservation.expires_at),
        )
        if not outcome.accepted:
            raise Conflict(f"the station refused the reservation: {outcome.reason}")
        self._reservations.get().ask(
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
        self._reservations.get().ask(
            ReleaseReservation(evse_id=evse_id, outcome=outcome, reason=reason),
            timeout=ASK_TIMEOUT_S,
        )
        self._commands.command(
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
        elif current is not None and not caller.operator:
            raise Conflict(f"EVSE {evse_id} is reserved by another driver: choose another EVSE")
        session_id = self._new_id()
        self.quota.admit(
            SessionOwner(
                session_id=session_id,
                driver_id=caller.user_id,
                reservation_id=reservation_id,
                target_soc=target_soc,
                evse_id=evse_id,
            ),
            operator=caller.operator,
        )
        if current is not None and reservation_id is None:  # an operator's start
            self._release(
                evse_id, "interrupted", f"someone else started charging at {evse_id}", current
            )
        try:
            outcome = self._commands.command(
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
        outcome = self._commands.command(
            evse_id, CommandName.STOP, StopArgs(session_id=SessionId(session_id))
        )
        if not outcome.accepted:
            raise Conflict(f"the station refused to stop: {outcome.reason}")
        return outcome

    def session_driver(self, session_id: str) -> str | None:
        """The driver of a session the CSMS started, from memory only (never a query)."""
        owner = self._owners.get(session_id)
        return None if owner is None else owner.driver_id

    # ------------------------------------------------------------------ operators

    def set_maintenance(self, caller: Caller, evse_id: str, enabled: bool) -> CommandOutcome:
        if not caller.operator:
            raise Forbidden("only operators switch maintenance")
        self._state(evse_id)
        outcome = self._commands.command(
            evse_id, CommandName.MAINTENANCE, MaintenanceArgs(enabled=enabled)
        )
        if not outcome.accepted:
            raise Conflict(f"the station refused maintenance: {outcome.reason}")
        if self._alerts is not None:
            self._alerts.record(
                "maintenance",
                f"EVSE {evse_id} {'put into' if enabled else 'taken out of'} maintenance"
                " by an operator",
                station_id=outcome.state.station_id,
                evse_id=evse_id,
            )
        return outcome

    def info(self, evse_id: str) -> CommandOutcome:
        """A live ``info`` round trip to the station (not the CSMS's cached view)."""
        self._state(evse_id)
        return self._commands.command(evse_id, CommandName.INFO)

    def _state(self, evse_id: str) -> EvseState:
        view = self._view.evse(evse_id)
        if view is None:
            raise UnknownEvseError(f"unknown EVSE {evse_id!r}")
        return view.state
