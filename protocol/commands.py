"""One dataclass per command, with its arguments: :func:`command_args` reads them from the
wire, :func:`args_dict` writes them (``docs/protocol.md``, section 6).

Each class names its command (``StartArgs.command`` is ``START``), so a command and its
arguments cannot disagree: the CSMS sends a :data:`Command` (``SendCommand(args=StopArgs())``
is a stop; there is no separate name to get wrong, and mypy refuses anything else)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, ClassVar, Final

from protocol.fields import get_field, id_field, int_field, number_field
from protocol.ids import SessionId
from protocol.messages import CommandName, CommandRequest

__all__ = [
    "MAX_LIMIT_W",
    "CancelReservationArgs",
    "Command",
    "CommandArgs",
    "InfoArgs",
    "MaintenanceArgs",
    "ReserveArgs",
    "SetLimitArgs",
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


MAX_LIMIT_W: Final = 1_000_000.0
"""The highest ``limit_w`` or ``fallback_w`` of a ``set_limit`` (1 MW)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SetLimitArgs:
    """The most an EVSE may draw, in W, until ``expires_at`` (epoch ms); then ``fallback_w``,
    or the EVSE's own ``min_power_w`` without one (``docs/protocol.md``, section 6.2)."""

    command: ClassVar[CommandName] = CommandName.SET_LIMIT
    limit_w: float
    expires_at: int
    fallback_w: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class InfoArgs:
    """``info`` takes no arguments."""

    command: ClassVar[CommandName] = CommandName.INFO


Command = (
    StartArgs
    | StopArgs
    | MaintenanceArgs
    | ReserveArgs
    | CancelReservationArgs
    | SetLimitArgs
    | InfoArgs
)
"""A command the CSMS sends: the class is the command, its fields its arguments."""

CommandArgs = (
    StartArgs
    | StopArgs
    | MaintenanceArgs
    | ReserveArgs
    | CancelReservationArgs
    | SetLimitArgs
    | None
)
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
        case CommandName.SET_LIMIT:
            return SetLimitArgs(
                limit_w=number_field(a, "limit_w", lo=0, hi=MAX_LIMIT_W),
                expires_at=int_field(a, "expires_at"),
                fallback_w=number_field(a, "fallback_w", lo=0, hi=MAX_LIMIT_W, optional=True),
            )
    return None


def args_dict(args: CommandArgs | InfoArgs) -> dict[str, Any]:
    """The wire form of typed command arguments (``None`` fields left out)."""
    if args is None:
        return {}
    return {k: v for k, v in asdict(args).items() if v is not None}  # ClassVars are not fields
