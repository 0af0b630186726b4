"""The messages of protocol v2 as dataclasses, and the enums their fields take.

:func:`~protocol.codec.encode` turns a :data:`Message` into a topic and a JSON payload and
:func:`~protocol.codec.parse` back; ``docs/protocol.md`` (section 5) shows each on the wire.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from enum import StrEnum
from typing import Any, Final

from protocol.ids import CorrelationId, EvseId, SessionId, StationId

__all__ = [
    "DEFAULT_MIN_POWER_W",
    "EVSE_VALUE_FIELDS",
    "CommandName",
    "CommandReply",
    "CommandRequest",
    "EvseDescriptor",
    "EvseInfo",
    "EvseStatus",
    "EvseValues",
    "Message",
    "MeterValues",
    "RejectReason",
    "StationBirth",
    "StationDescriptor",
    "StationOffline",
    "StatusReport",
    "StopReason",
    "evse_values",
]


class EvseStatus(StrEnum):
    """OCPP 1.6 connector statuses, plus ``Offline`` which only the CSMS sets (last will)."""

    AVAILABLE = "Available"
    RESERVED = "Reserved"
    PREPARING = "Preparing"
    CHARGING = "Charging"
    SUSPENDED_EV = "SuspendedEV"
    SUSPENDED_EVSE = "SuspendedEVSE"
    FINISHING = "Finishing"
    UNAVAILABLE = "Unavailable"
    FAULTED = "Faulted"
    OFFLINE = "Offline"


class CommandName(StrEnum):
    START = "start"
    STOP = "stop"
    INFO = "info"
    MAINTENANCE = "maintenance"
    RESERVE = "reserve"
    CANCEL_RESERVATION = "cancel_reservation"
    SET_LIMIT = "set_limit"


class RejectReason(StrEnum):
    """Why a station refused a command (``reason`` of a rejected reply).

    ``offline`` is the CSMS's own: the station is not connected, so nothing was sent."""

    MAINTENANCE = "maintenance"
    BUSY = "busy"
    RESERVED = "reserved"
    FAULTED = "faulted"
    FINISHING = "finishing"
    NO_SESSION = "no_session"
    SESSION_MISMATCH = "session_mismatch"
    NOT_RESERVED = "not_reserved"
    RESERVATION_MISMATCH = "reservation_mismatch"
    UNKNOWN_EVSE = "unknown_evse"
    INVALID_COMMAND = "invalid_command"
    EXPIRED = "expired"
    OFFLINE = "offline"


class StopReason(StrEnum):
    """Why a session ended (``stop_reason`` of the status report that enters Finishing)."""

    REMOTE = "Remote"
    SOC_REACHED = "SoCReached"
    EV_DISCONNECTED = "EVDisconnected"
    LOCAL = "Local"
    OTHER = "Other"


DEFAULT_MIN_POWER_W: Final = 1_380.0
"""The least power an EVSE charges at unless its birth says otherwise: 6 A on one 230 V phase
(IEC 61851's lowest charging current). A ``set_limit`` below it suspends charging."""


@dataclass(frozen=True, slots=True, kw_only=True)
class EvseDescriptor:
    """An EVSE as the station describes it in its birth message.

    ``min_power_w`` is never above ``max_power_w``: the default on an EVSE rated below it
    becomes its maximum (the codec refuses an explicit minimum above the maximum)."""

    id: EvseId
    connector: str = "Type2"
    max_power_w: float = 22_000.0
    min_power_w: float = DEFAULT_MIN_POWER_W

    def __post_init__(self) -> None:
        if self.min_power_w > self.max_power_w:
            object.__setattr__(self, "min_power_w", self.max_power_w)


@dataclass(frozen=True, slots=True, kw_only=True)
class StationDescriptor:
    id: StationId
    name: str
    lat: float
    lon: float
    evses: tuple[EvseDescriptor, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class StationBirth:
    """Retained ``state`` with ``online: true``: the station is up and describes itself.

    ``epoch`` is the station's boot epoch: its reports are ordered by ``(epoch, seq)``."""

    station: StationDescriptor
    ts: int
    epoch: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class StationOffline:
    """Retained ``state`` with ``online: false``: a clean shutdown or the last will."""

    station_id: StationId
    ts: int
    reason: str = "connection_lost"


@dataclass(frozen=True, slots=True, kw_only=True)
class EvseValues:
    """What changes of an EVSE, the one list of its fields: what a station reports
    (:class:`EvseInfo`), what the CSMS holds (``actors.evse_state.EvseState``) and what a
    simulated EVSE keeps all extend it, and :func:`evse_values` copies them across."""

    status: EvseStatus
    soc: float | None = None
    power_w: float = 0.0
    energy_wh: float = 0.0
    session_id: SessionId | None = None
    session_energy_wh: float = 0.0
    target_soc: float | None = None
    reservation_id: str | None = None
    maintenance: bool = False
    maintenance_pending: bool = False
    stop_reason: StopReason | None = None


EVSE_VALUE_FIELDS: Final = tuple(f.name for f in fields(EvseValues))


def evse_values(source: EvseValues) -> dict[str, Any]:
    """The :class:`EvseValues` fields of ``source`` by name (a shallow copy, for
    ``EvseInfo(evse_id=..., **evse_values(state))`` or ``replace(state, **evse_values(info))``)."""
    return {name: getattr(source, name) for name in EVSE_VALUE_FIELDS}


@dataclass(frozen=True, slots=True, kw_only=True)
class EvseInfo(EvseValues):
    """The full state of one EVSE, as a station reports it (status reports and replies)."""

    evse_id: EvseId


@dataclass(frozen=True, slots=True, kw_only=True)
class StatusReport:
    """Retained ``status``: an EVSE changed status (and its info at that moment)."""

    station_id: StationId
    info: EvseInfo
    seq: int
    ts: int
    epoch: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class MeterValues:
    """Periodic ``meter`` sample while a session runs."""

    station_id: StationId
    evse_id: EvseId
    session_id: SessionId | None
    power_w: float
    energy_wh: float
    soc: float | None
    seq: int
    ts: int
    epoch: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class CommandRequest:
    station_id: StationId
    id: CorrelationId
    command: CommandName
    evse_id: EvseId
    expires_at: int
    """Epoch ms after which the station must not carry the command out (it replies
    ``expired``): a command can never run late, e.g. after a reconnect."""
    args: dict[str, Any] = field(default_factory=dict)
    ts: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class CommandReply:
    station_id: StationId
    id: CorrelationId
    command: CommandName
    evse_id: EvseId
    accepted: bool
    reason: str | None = None
    info: EvseInfo | None = None
    ts: int = 0


Message = StationBirth | StationOffline | StatusReport | MeterValues | CommandRequest | CommandReply
