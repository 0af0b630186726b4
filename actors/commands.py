r"""Commands: how anything outside an EVSE actor sends that EVSE a command.

It needs only the :class:`~actors.routing.EvseRegistry` (EVSE key -> live actor, and the
running supervisor), so the composition root builds it before any actor starts and hands it
to whoever sends commands: the :class:`~actors.charging.ChargingService` (the gateway's
edge), the :class:`~actors.reservations.ReservationActor` (a station's cancel on expiry)
and the gateway itself. Nothing holds the whole system.

Two ways to send, both a ``tell`` to the EVSE actor:

- :meth:`Commands.send` returns the reply future at once. An actor passes a
  :class:`NotifyingFuture` whose ``on_done`` ``tell``\ s it the outcome as a message, so it
  never blocks its thread (the EVSE actor always completes the future: accepted, refused,
  or :class:`CommandTimeoutError` when its timer on the CSMS clock fires).
- :meth:`Commands.command` waits for the outcome: only at the edge (a request thread).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, TypeVar, cast, overload

import pykka

from actors.messages import CommandOutcome, GetEvseRef, SendCommand
from actors.routing import EvseRegistry
from protocol import (
    CancelReservationArgs,
    Command,
    CommandArgs,
    CommandName,
    EvseId,
    MaintenanceArgs,
    RejectReason,
    ReserveArgs,
    StartArgs,
    StopArgs,
    command_for,
)
from storage.errors import ActorUnavailableError, CommandTimeoutError, StationOfflineError

__all__ = ["Commands", "NotifyingFuture"]

T = TypeVar("T")
T_s = float | None

REPLY_GRACE_S = 2.0
"""How much longer than the command's own time-out :meth:`Commands.command` waits in real
time, should the EVSE actor never complete the future (it died)."""


class NotifyingFuture(pykka.ThreadingFuture[T]):
    """A future that calls ``on_done(self)`` once it has a value or an exception.

    ``on_done`` runs on the thread that completes the future (an EVSE actor's), so it must
    only ``tell`` (Pykka futures have no done-callbacks of their own).
    """

    def __init__(self, on_done: Callable[[pykka.Future[T]], None]) -> None:
        super().__init__()
        self._on_done = on_done

    def set(self, value: Any | None = None) -> None:
        super().set(value)
        self._on_done(self)

    def set_exception(self, exc_info: Any = None) -> None:
        super().set_exception(exc_info)
        self._on_done(self)


class Commands:
    """Sends commands to EVSE actors found in ``registry``; safe from any thread."""

    def __init__(self, registry: EvseRegistry, *, timeout_s: float = 10.0) -> None:
        self._registry = registry
        self.timeout_s = timeout_s

    def evse_ref(self, evse_id: str, timeout_s: float = 5.0) -> pykka.ActorRef[Any]:
        """The EVSE's live actor, from the registry (no ``ask``); without one the supervisor
        says why (unknown, out of service)."""
        known = self._registry.get(evse_id)
        if known is not None and known.is_alive():
            return known
        supervisor = self._registry.supervisor
        if supervisor is None:
            raise ActorUnavailableError("the CSMS is not running")
        try:
            return cast(
                "pykka.ActorRef[Any]",
                supervisor.ask(GetEvseRef(evse_id=EvseId(evse_id)), timeout=timeout_s),
            )
        except pykka.Timeout:
            raise ActorUnavailableError("the supervisor did not answer in time") from None
        except pykka.ActorDeadError:
            raise ActorUnavailableError("the supervisor is down") from None

    def send(
        self,
        evse_id: str,
        command: Command,
        timeout_s: float | None = None,
        *,
        reply: pykka.Future[CommandOutcome] | None = None,
        ask_supervisor: bool = True,
    ) -> pykka.Future[CommandOutcome]:
        """Tell the EVSE actor to send ``command`` (one class per command: ``StopArgs(...)``
        is a stop, :mod:`protocol.commands`); the future (``reply``, or a new one)
        gets its :class:`CommandOutcome`, or :class:`CommandTimeoutError` once the CSMS clock
        passes ``timeout_s``. ``ask_supervisor=False``: an actor's call, which must not
        ``ask``; without a live actor in the registry it gets :class:`ActorUnavailableError`."""
        timeout = timeout_s if timeout_s is not None else self.timeout_s
        if ask_supervisor:
            ref = self.evse_ref(evse_id)
        else:
            live = self._registry.get(evse_id)
            if live is None or not live.is_alive():
                raise ActorUnavailableError(f"EVSE {evse_id} has no live actor")
            ref = live
        if reply is None:
            reply = pykka.ThreadingFuture()
        try:
            ref.tell(SendCommand(args=command, reply=reply, timeout_s=timeout))
        except pykka.ActorDeadError:
            raise ActorUnavailableError(f"EVSE {evse_id} is restarting; try again") from None
        return reply

    @overload
    def command(
        self,
        evse_id: str,
        command: Literal[CommandName.START],
        args: StartArgs,
        timeout_s: T_s = None,
    ) -> CommandOutcome: ...
    @overload
    def command(
        self,
        evse_id: str,
        command: Literal[CommandName.STOP],
        args: StopArgs | None = None,
        timeout_s: T_s = None,
    ) -> CommandOutcome: ...
    @overload
    def command(
        self,
        evse_id: str,
        command: Literal[CommandName.MAINTENANCE],
        args: MaintenanceArgs,
        timeout_s: T_s = None,
    ) -> CommandOutcome: ...
    @overload
    def command(
        self,
        evse_id: str,
        command: Literal[CommandName.RESERVE],
        args: ReserveArgs,
        timeout_s: T_s = None,
    ) -> CommandOutcome: ...
    @overload
    def command(
        self,
        evse_id: str,
        command: Literal[CommandName.CANCEL_RESERVATION],
        args: CancelReservationArgs | None = None,
        timeout_s: T_s = None,
    ) -> CommandOutcome: ...
    @overload
    def command(
        self,
        evse_id: str,
        command: Literal[CommandName.INFO],
        args: None = None,
        timeout_s: T_s = None,
    ) -> CommandOutcome: ...

    def command(
        self,
        evse_id: str,
        command: CommandName,
        args: CommandArgs = None,
        timeout_s: float | None = None,
    ) -> CommandOutcome:
        """Send a command and wait for the station's reply (edge-only: blocks the caller).
        The overloads pair each command with its arguments for mypy; :meth:`named` is the
        same for a caller that holds the name apart (checked when it runs)."""
        return self.named(evse_id, command, args, timeout_s)

    def named(
        self,
        evse_id: str,
        command: CommandName,
        args: CommandArgs = None,
        timeout_s: float | None = None,
    ) -> CommandOutcome:
        """:meth:`command` for any name; ``TypeError`` if ``args`` are another command's."""
        typed = command_for(command, args)
        timeout = timeout_s if timeout_s is not None else self.timeout_s
        reply = self.send(evse_id, typed, timeout)
        try:
            outcome = reply.get(timeout=timeout + REPLY_GRACE_S)
        except pykka.Timeout:
            raise CommandTimeoutError(f"no answer for {command} on EVSE {evse_id}") from None
        if not outcome.accepted and outcome.reason == RejectReason.OFFLINE:
            raise StationOfflineError(
                f"offline: the station of EVSE {evse_id} is not connected; {command} was not sent"
            )
        return outcome
