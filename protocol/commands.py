"""One dataclass per command, with its arguments: :func:`command_args` reads them from the
wire, :func:`args_dict` writes them (``docs/protocol.md``, section 6).

Each class names its command (``StartArgs.command`` is ``START``), so a command and its
arguments cannot disagree: the CSMS sends a :data:`Command` (``SendCommand(args=StopArgs())``
is a stop; there is no separate name to get wrong, and mypy refuses anything else)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, ClassVar

from protocol.fields import get_field, id_field, number_field
from protocol.ids import SessionId
from protocol.messages import CommandName, CommandRequest

__all__ = [
    "CancelReservationArgs",
    "Command",
    "CommandArgs",
    "InfoArgs",
    "MaintenanceArgs",
    "ReserveArgs",
    "StartArgs",
    "StopArgs",
    "args_dict",
    "command_args",
    "command_for",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class StartArgs:
    command: ClassVar[CommandName] = CommandName.START
    session_id: SessionId
    target_soc: float | None = None
    reservation_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class StopArgs:
    command: ClassVar[CommandName] = CommandName.STOP
    session_id: SessionId | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class MaintenanceArgs:
    command: ClassVar[CommandName] = CommandName.MAINTENANCE
    enabled: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class ReserveArgs:
    command: ClassVar[CommandName] = CommandName.RESERVE
    reservation_id: str
    expires_at: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CancelReservationArgs:
    command: ClassVar[CommandName] = CommandName.CANCEL_RESERVATION
    reservation_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class InfoArgs:
    """``info`` takes no arguments."""

    command: ClassVar[CommandName] = CommandName.INFO


Command = StartArgs | StopArgs | MaintenanceArgs | ReserveArgs | CancelReservationArgs | InfoArgs
"""A command the CSMS sends: the class is the command, its fields its arguments."""

CommandArgs = StartArgs | StopArgs | MaintenanceArgs | ReserveArgs | CancelReservationArgs | None
"""The typed ``args`` of a command request as read from the wire (``None``: ``info``)."""

_WITHOUT_ARGS: dict[CommandName, Command] = {
    CommandName.INFO: InfoArgs(),
    CommandName.STOP: StopArgs(),
    CommandName.CANCEL_RESERVATION: CancelReservationArgs(),
}


def command_for(name: CommandName, args: CommandArgs | InfoArgs = None) -> Command:
    """The :data:`Command` ``name`` with ``args`` (``None``: a command that needs none);
    ``TypeError`` when they disagree (for callers that hold the name apart, e.g. the CLI)."""
    if args is None:
        if name not in _WITHOUT_ARGS:
            raise TypeError(f"{name} needs its arguments")
        return _WITHOUT_ARGS[name]
    if args.command is not name:
        raise TypeError(f"{type(args).__name__} are not the arguments of {name}")
    return args


def command_args(request: CommandRequest) -> CommandArgs:
    """Validate and type the ``args`` of a command request (raises :class:`ProtocolError`)."""
    a = request.args
    match request.command:
        case CommandName.START:
            return StartArgs(
                session_id=SessionId(id_field(a, "session_id")),
                target_soc=number_field(a, "target_soc", lo=1, hi=100, optional=True),
                reservation_id=id_field(a, "reservation_id", optional=True),
            )
        case CommandName.STOP:
            return StopArgs(session_id=id_field(a, "session_id", optional=True))
        case CommandName.MAINTENANCE:
            return MaintenanceArgs(enabled=get_field(a, "enabled", bool))
        case CommandName.RESERVE:
            expires = get_field(a, "expires_at", int, optional=True)
            return ReserveArgs(reservation_id=id_field(a, "reservation_id"), expires_at=expires)
        case CommandName.CANCEL_RESERVATION:
            return CancelReservationArgs(
                reservation_id=id_field(a, "reservation_id", optional=True)
            )
    return None


def args_dict(args: CommandArgs | InfoArgs) -> dict[str, Any]:
    """The wire form of typed command arguments (``None`` fields left out)."""
    if args is None:
        return {}
    return {k: v for k, v in asdict(args).items() if v is not None}  # ClassVars are not fields
