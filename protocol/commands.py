"""The arguments of each command, typed: :func:`command_args` reads them, :func:`args_dict`
writes them (``docs/protocol.md``, section 6)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from protocol.fields import get_field, id_field, number_field
from protocol.ids import SessionId
from protocol.messages import CommandName, CommandRequest

__all__ = [
    "CancelReservationArgs",
    "CommandArgs",
    "MaintenanceArgs",
    "ReserveArgs",
    "StartArgs",
    "StopArgs",
    "args_dict",
    "command_args",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class StartArgs:
    session_id: SessionId
    target_soc: float | None = None
    reservation_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class StopArgs:
    session_id: SessionId | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class MaintenanceArgs:
    enabled: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class ReserveArgs:
    reservation_id: str
    expires_at: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CancelReservationArgs:
    reservation_id: str | None = None


CommandArgs = StartArgs | StopArgs | MaintenanceArgs | ReserveArgs | CancelReservationArgs | None


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


def args_dict(args: CommandArgs) -> dict[str, Any]:
    """The wire form of typed command arguments (``None`` fields left out)."""
    if args is None:
        return {}
    return {k: v for k, v in asdict(args).items() if v is not None}
