"""Wire protocol v2: every MQTT topic and payload between stations and the CSMS.

This is the only module that knows topic strings and JSON field names; the
simulator, the MQTT bridge and the tests all build and parse messages here.
``docs/protocol.md`` is the prose version for station vendors; keep both in step.

Design points (see FACTS.md for why):

- MQTT 3.1.1 is enough (amqtt rejects MQTT 5), so correlation ids travel in the
  payload, not in MQTT 5 properties.
- Every receiver checks that a topic is its own (amqtt leaks retained messages
  to unrelated subscribers), and that ids in the payload match ids in the topic.
- :func:`parse` only ever raises :class:`ProtocolError`, whatever the bytes.
- Version 2 (``docs/protocol.md``, "changes since version 1"): the CSMS names an EVSE by
  its station and its own id (:func:`evse_key`), station messages are ordered by
  ``(epoch, seq)`` where a birth announces the epoch, and every command carries
  ``expires_at``. A version 1 message raises :class:`UnsupportedVersion`, so the CSMS can
  refuse the station clearly instead of misreading it.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any, Final, NewType

__all__ = [
    "CSMS_SUBSCRIPTIONS",
    "LEGACY_TOPIC_ROOT",
    "MAX_FUTURE_SKEW_MS",
    "MAX_PAYLOAD_BYTES",
    "PROTOCOL_VERSION",
    "QOS",
    "TOPIC_ROOT",
    "CancelReservationArgs",
    "CommandArgs",
    "CommandName",
    "CommandReply",
    "CommandRequest",
    "CorrelationId",
    "EvseDescriptor",
    "EvseId",
    "EvseInfo",
    "EvseKey",
    "EvseStatus",
    "MaintenanceArgs",
    "Message",
    "MeterValues",
    "ProtocolError",
    "RejectReason",
    "ReserveArgs",
    "SessionId",
    "StartArgs",
    "StationBirth",
    "StationDescriptor",
    "StationId",
    "StationOffline",
    "StatusReport",
    "StopArgs",
    "StopReason",
    "UnsupportedVersion",
    "args_dict",
    "command_args",
    "commands_topic",
    "encode",
    "evse_key",
    "evse_topic_filter",
    "meter_topic",
    "parse",
    "replies_topic",
    "split_evse_key",
    "state_topic",
    "station_topic_filter",
    "status_topic",
    "valid_evse_key",
    "valid_id",
    "valid_station_id",
]

PROTOCOL_VERSION: Final = 2
TOPIC_ROOT: Final = "smartcharge/v2"
LEGACY_TOPIC_ROOT: Final = "smartcharge/v1"
"""Where version 1 stations publish: the CSMS listens there only to refuse them clearly."""
QOS: Final = 1
MAX_PAYLOAD_BYTES: Final = 64 * 1024
MAX_FUTURE_SKEW_MS: Final = 300_000
"""A report stamped more than this ahead of the CSMS's clock is refused (5 minutes)."""

StationId = NewType("StationId", str)
EvseId = NewType("EvseId", str)
SessionId = NewType("SessionId", str)
CorrelationId = NewType("CorrelationId", str)
EvseKey = NewType("EvseKey", EvseId)
"""How the CSMS names an EVSE everywhere (API paths, JSON, events, storage): the station id,
a dot, the station's own EVSE id (``ST-0042.1``). Station ids hold no dot, so the first dot
splits it and two stations' EVSEs can never collide."""

_ID_RE: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
_STATION_ID_RE: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


class ProtocolError(ValueError):
    """A topic or payload that does not follow protocol v2. The only error :func:`parse` raises."""


class UnsupportedVersion(ProtocolError):
    """A well-addressed message of another protocol version (a version 1 station).

    ``station_id`` is the station the topic names (already checked to be a valid id), so
    the CSMS can refuse that station by name and tell an operator."""

    def __init__(self, message: str, *, station_id: StationId, version: object) -> None:
        super().__init__(message)
        self.station_id = station_id
        self.version = version


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


# --------------------------------------------------------------------------- topics


def valid_id(value: object) -> bool:
    """True for ids usable in topics: 1-64 of ``A-Z a-z 0-9 _ . : -``, starting alphanumeric."""
    return isinstance(value, str) and _ID_RE.fullmatch(value) is not None


def valid_station_id(value: object) -> bool:
    """True for station ids: as :func:`valid_id`, without ``.`` (it splits an :data:`EvseKey`)
    and without ``:`` (a station id is its MQTT user name, and ``:`` ends one in password files)."""
    return isinstance(value, str) and _STATION_ID_RE.fullmatch(value) is not None


def evse_key(station_id: str, evse_id: str) -> EvseKey:
    """The CSMS-wide name of a station's EVSE: ``ST-0042`` and ``1`` give ``ST-0042.1``."""
    return EvseKey(EvseId(f"{station_id}.{evse_id}"))


def split_evse_key(key: str) -> tuple[StationId, EvseId]:
    """``ST-0042.1`` -> ``("ST-0042", "1")``; raises :class:`ProtocolError` if it is not one."""
    station_id, dot, evse_id = key.partition(".") if isinstance(key, str) else ("", "", "")
    if not dot or not valid_station_id(station_id) or not valid_id(evse_id):
        raise ProtocolError(f"not an EVSE id (station.evse): {str(key)[:140]!r}")
    return StationId(station_id), EvseId(evse_id)


def valid_evse_key(value: object) -> bool:
    try:
        split_evse_key(value)  # type: ignore[arg-type]
    except ProtocolError:
        return False
    return True


def _check_id(value: str, what: str) -> str:
    if not valid_id(value):
        raise ProtocolError(f"invalid {what} {value!r}")
    return value


def _check_station(value: str) -> str:
    if not valid_station_id(value):
        raise ProtocolError(f"invalid station id {value!r}")
    return value


def state_topic(station_id: str) -> str:
    """Retained station birth / last will (online or offline)."""
    return f"{TOPIC_ROOT}/stations/{_check_station(station_id)}/state"


def status_topic(station_id: str, evse_id: str) -> str:
    """Retained EVSE status report."""
    sid = _check_station(station_id)
    return f"{TOPIC_ROOT}/stations/{sid}/evses/{_check_id(evse_id, 'evse id')}/status"


def meter_topic(station_id: str, evse_id: str) -> str:
    sid = _check_station(station_id)
    return f"{TOPIC_ROOT}/stations/{sid}/evses/{_check_id(evse_id, 'evse id')}/meter"


def commands_topic(station_id: str) -> str:
    """CSMS -> station command requests."""
    return f"{TOPIC_ROOT}/stations/{_check_station(station_id)}/commands"


def replies_topic(station_id: str) -> str:
    """Station -> CSMS command replies."""
    return f"{TOPIC_ROOT}/stations/{_check_station(station_id)}/replies"


CSMS_SUBSCRIPTIONS: Final = (
    f"{TOPIC_ROOT}/stations/+/state",
    f"{TOPIC_ROOT}/stations/+/replies",
    f"{TOPIC_ROOT}/stations/+/evses/+/status",
    f"{TOPIC_ROOT}/stations/+/evses/+/meter",
    f"{LEGACY_TOPIC_ROOT}/stations/+/state",  # only to refuse version 1 stations by name
)
"""What the CSMS subscribes to (QoS 1)."""


def station_topic_filter(station_id: str = "+") -> str:
    """Everything a station publishes except EVSE reports: ``state`` and ``replies``."""
    return f"{TOPIC_ROOT}/stations/{station_id}/+"


def evse_topic_filter(station_id: str = "+") -> str:
    """EVSE status and meter reports of one station (or all, with ``+``)."""
    return f"{TOPIC_ROOT}/stations/{station_id}/evses/+/+"


# --------------------------------------------------------------------------- messages


@dataclass(frozen=True, slots=True, kw_only=True)
class EvseDescriptor:
    """An EVSE as the station describes it in its birth message."""

    id: EvseId
    connector: str = "Type2"
    max_power_w: float = 22_000.0


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
class EvseInfo:
    """The full state of one EVSE, as a station reports it (status reports and replies)."""

    evse_id: EvseId
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


# --------------------------------------------------------------------------- encoding


def _info_dict(info: EvseInfo) -> dict[str, Any]:
    return {k: v for k, v in asdict(info).items() if v is not None}


def encode(message: Message) -> tuple[str, bytes, bool]:
    """Return ``(topic, payload, retain)`` for a message."""
    body: dict[str, Any]
    retain = False
    match message:
        case StationBirth(station=st, ts=ts, epoch=epoch):
            topic, retain = state_topic(st.id), True
            body = {"online": True, "ts": ts, "epoch": epoch, "station": asdict(st)}
        case StationOffline(station_id=sid, ts=ts, reason=reason):
            topic, retain = state_topic(sid), True
            body = {"online": False, "ts": ts, "reason": reason}
        case StatusReport(station_id=sid, info=info, seq=seq, ts=ts, epoch=epoch):
            topic, retain = status_topic(sid, info.evse_id), True
            body = {"epoch": epoch, "seq": seq, "ts": ts, **_info_dict(info)}
        case MeterValues() as m:
            topic = meter_topic(m.station_id, m.evse_id)
            body = {k: v for k, v in asdict(m).items() if k != "station_id" and v is not None}
        case CommandRequest() as c:
            topic = commands_topic(c.station_id)
            body = {
                "id": c.id,
                "command": c.command,
                "evse_id": c.evse_id,
                "ts": c.ts,
                "expires_at": c.expires_at,
                "args": c.args,
            }
        case CommandReply() as r:
            topic = replies_topic(r.station_id)
            body = {
                "id": r.id,
                "command": r.command,
                "evse_id": r.evse_id,
                "ts": r.ts,
                "accepted": r.accepted,
                "reason": r.reason,
            }
            if r.info is not None:
                body["evse"] = _info_dict(r.info)
        case _:
            raise ProtocolError(f"cannot encode {type(message).__name__}")
    body = {"v": PROTOCOL_VERSION, **body}
    try:
        text = json.dumps(body, separators=(",", ":"), allow_nan=False)
    except ValueError as exc:  # NaN or an infinity: not JSON, and every receiver rejects it
        raise ProtocolError(f"cannot encode {type(message).__name__}: {exc}") from None
    return topic, text.encode(), retain


# --------------------------------------------------------------------------- parsing


def _get(
    body: dict[str, Any],
    key: str,
    kind: type | tuple[type, ...],
    *,
    optional: bool = False,
    default: Any = None,
) -> Any:
    value = body.get(key)
    if value is None:
        if optional:
            return default
        raise ProtocolError(f"missing field {key!r}")
    if not isinstance(value, kind):
        raise ProtocolError(f"field {key!r} must be {_kind_name(kind)}")
    if value.__class__ is bool and kind is not bool and bool not in _as_tuple(kind):
        raise ProtocolError(f"field {key!r} must be {_kind_name(kind)}, not a boolean")
    return value


def _as_tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _kind_name(kind: type | tuple[type, ...]) -> str:
    return " or ".join(k.__name__ for k in _as_tuple(kind))


def _number(
    body: dict[str, Any],
    key: str,
    *,
    lo: float,
    hi: float,
    optional: bool = False,
    default: float | None = None,
) -> Any:
    value = _get(body, key, (int, float), optional=optional, default=default)
    if value is None:
        return None
    # Range first: math.isfinite() raises OverflowError on a huge JSON integer.
    if not lo <= value <= hi or not math.isfinite(value):
        raise ProtocolError(f"field {key!r} out of range [{lo}, {hi}]: {value!r}")
    return float(value)


def _int(body: dict[str, Any], key: str, *, lo: int = 0, hi: int = 2**63 - 1) -> int:
    value = _get(body, key, int)
    if not lo <= value <= hi:
        raise ProtocolError(f"field {key!r} out of range: {value!r}")
    return int(value)


def _ident(body: dict[str, Any], key: str, *, optional: bool = False) -> Any:
    value = _get(body, key, str, optional=optional)
    if value is not None and not valid_id(value):
        raise ProtocolError(f"field {key!r} is not a valid id: {value!r}")
    return value


def _enum(body: dict[str, Any], key: str, enum: type[StrEnum], *, optional: bool = False) -> Any:
    value = _get(body, key, str, optional=optional)
    if value is None:
        return None
    try:
        return enum(value)
    except ValueError:
        raise ProtocolError(f"field {key!r} has unknown value {value!r}") from None


def _parse_info(body: dict[str, Any], evse_id: str | None = None) -> EvseInfo:
    info = EvseInfo(
        evse_id=EvseId(_ident(body, "evse_id")),
        status=_enum(body, "status", EvseStatus),
        soc=_number(body, "soc", lo=0, hi=100, optional=True),
        power_w=_number(body, "power_w", lo=0, hi=1e7, optional=True, default=0.0),
        energy_wh=_number(body, "energy_wh", lo=0, hi=1e15, optional=True, default=0.0),
        session_id=_ident(body, "session_id", optional=True),
        session_energy_wh=_number(
            body, "session_energy_wh", lo=0, hi=1e15, optional=True, default=0.0
        ),
        target_soc=_number(body, "target_soc", lo=0, hi=100, optional=True),
        reservation_id=_ident(body, "reservation_id", optional=True),
        maintenance=_get(body, "maintenance", bool, optional=True, default=False),
        maintenance_pending=_get(body, "maintenance_pending", bool, optional=True, default=False),
        stop_reason=_enum(body, "stop_reason", StopReason, optional=True),
    )
    if info.status is EvseStatus.OFFLINE:
        raise ProtocolError("a station never reports 'Offline': that status is the CSMS's own")
    if evse_id is not None and info.evse_id != evse_id:
        raise ProtocolError(f"evse_id {info.evse_id!r} does not match topic's {evse_id!r}")
    return info


def _parse_station(body: Any) -> StationDescriptor:
    if not isinstance(body, dict):
        raise ProtocolError("field 'station' must be an object")
    raw_evses = _get(body, "evses", list)
    if not 1 <= len(raw_evses) <= 64:
        raise ProtocolError("a station has 1 to 64 EVSEs")
    evses = []
    for raw in raw_evses:
        if not isinstance(raw, dict):
            raise ProtocolError("each EVSE must be an object")
        evses.append(
            EvseDescriptor(
                id=EvseId(_ident(raw, "id")),
                connector=_get(raw, "connector", str, optional=True, default="Type2")[:32],
                max_power_w=_number(raw, "max_power_w", lo=1, hi=1e7),
            )
        )
    if len({e.id for e in evses}) != len(evses):
        raise ProtocolError("EVSE ids of a station must be unique")
    return StationDescriptor(
        id=StationId(_ident(body, "id")),
        name=_get(body, "name", str)[:120],
        lat=_number(body, "lat", lo=-90, hi=90),
        lon=_number(body, "lon", lo=-180, hi=180),
        evses=tuple(evses),
    )


_PREFIX: Final = TOPIC_ROOT + "/stations/"
_LEGACY_PREFIX: Final = LEGACY_TOPIC_ROOT + "/stations/"


def _split_topic(topic: str) -> list[str]:
    if not topic.startswith(_PREFIX):
        if topic.startswith(_LEGACY_PREFIX):
            sid = topic[len(_LEGACY_PREFIX) :].split("/")[0]
            if valid_id(sid):
                raise UnsupportedVersion(
                    f"station {sid!r} speaks protocol version 1; this CSMS speaks version "
                    f"{PROTOCOL_VERSION} (docs/protocol.md, changes since version 1)",
                    station_id=StationId(sid),
                    version=1,
                )
        raise ProtocolError(f"not a protocol v{PROTOCOL_VERSION} topic: {topic[:200]!r}")
    parts = topic[len(_PREFIX) :].split("/")
    if not valid_station_id(parts[0]) or (len(parts) > 2 and not valid_id(parts[2])):
        raise ProtocolError(f"invalid id in topic {topic[:200]!r}")
    return parts


def parse(topic: str, payload: bytes | bytearray) -> Message:
    """Parse one MQTT message into a protocol dataclass.

    Raises :class:`ProtocolError` (and nothing else) for any topic or payload that
    is not a well-formed v1 message, including ids that disagree with the topic.
    """
    try:
        return _parse(topic, payload)
    except ProtocolError:
        raise
    except (
        ValueError,
        TypeError,
        KeyError,
        AttributeError,
        RecursionError,
        ArithmeticError,
    ) as exc:
        raise ProtocolError(f"malformed message on {topic[:200]!r}: {exc}") from None


def _reject_constant(name: str) -> Any:
    raise ProtocolError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ProtocolError(f"number {text[:40]!r} is out of the float range")
    return value


_MAX_INT: Final = 2**63 - 1


def _fast_meter(sid: StationId, evse_id: str, body: dict[str, Any]) -> MeterValues | None:
    """The common shape of meter values (floats, ints, in range) checked in one go, or
    ``None``: then the field-by-field path below decides, with its precise errors.

    Accepts nothing the slow path would refuse: the topic's ``evse_id`` is already valid,
    ``float`` values from the decoder are finite (``_finite_float``), and ``type() is``
    excludes booleans."""
    get = body.get
    seq, ts, epoch, power, energy, soc, session = (
        get("seq"),
        get("ts"),
        get("epoch"),
        get("power_w"),
        get("energy_wh"),
        get("soc"),
        get("session_id"),
    )
    if (
        get("evse_id") == evse_id
        and type(seq) is int
        and type(ts) is int
        and 0 <= seq <= _MAX_INT
        and 0 <= ts <= _MAX_INT
        and type(epoch) is int
        and 0 <= epoch <= _MAX_INT
        and type(power) is float
        and 0.0 <= power <= 1e7
        and type(energy) is float
        and 0.0 <= energy <= 1e15
        and (soc is None or (type(soc) is float and 0.0 <= soc <= 100.0))
        and (session is None or valid_id(session))
    ):
        return MeterValues(
            station_id=sid,
            evse_id=EvseId(evse_id),
            session_id=session,
            power_w=power,
            energy_wh=energy,
            soc=soc,
            seq=seq,
            ts=ts,
            epoch=epoch,
        )
    return None


_DECODER: Final = json.JSONDecoder(parse_constant=_reject_constant, parse_float=_finite_float)


def _parse(topic: str, payload: bytes | bytearray) -> Message:
    if not isinstance(topic, str):
        raise ProtocolError("topic must be a string")
    parts = _split_topic(topic)
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise ProtocolError(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD_BYTES}")
    if payload[:3] == b"\xef\xbb\xbf":
        raise ProtocolError("payload starts with a byte-order mark (section 4 forbids it)")
    try:
        text = bytes(payload).decode("utf-8")  # UTF-8 only (section 4), strictly
        body = _DECODER.decode(text)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProtocolError(f"payload is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ProtocolError("payload must be a JSON object")
    version = body.get("v")
    sid = StationId(parts[0])
    if type(version) is not int or version != PROTOCOL_VERSION:  # not True, not 1.0
        if type(version) is int and version == 1:
            raise UnsupportedVersion(
                f"station {sid!r} sent a protocol version 1 payload on a version "
                f"{PROTOCOL_VERSION} topic",
                station_id=sid,
                version=version,
            )
        raise ProtocolError(f"unsupported protocol version {body.get('v')!r}")
    match parts[1:]:
        case ["state"]:
            online = _get(body, "online", bool)
            ts = _int(body, "ts")
            if not online:
                reason = _get(body, "reason", str, optional=True, default="connection_lost")
                return StationOffline(station_id=sid, ts=ts, reason=reason[:64])
            station = _parse_station(body.get("station"))
            if station.id != sid:
                raise ProtocolError(f"station id {station.id!r} does not match topic's {sid!r}")
            return StationBirth(station=station, ts=ts, epoch=_int(body, "epoch"))
        case ["evses", evse_id, "status"]:
            return StatusReport(
                station_id=sid,
                info=_parse_info(body, evse_id),
                seq=_int(body, "seq"),
                ts=_int(body, "ts"),
                epoch=_int(body, "epoch"),
            )
        case ["evses", evse_id, "meter"]:
            fast = _fast_meter(sid, evse_id, body)
            if fast is not None:
                return fast
            if _ident(body, "evse_id") != evse_id:
                raise ProtocolError("evse_id does not match the topic")
            return MeterValues(
                station_id=sid,
                evse_id=EvseId(evse_id),
                session_id=_ident(body, "session_id", optional=True),
                power_w=_number(body, "power_w", lo=0, hi=1e7),
                energy_wh=_number(body, "energy_wh", lo=0, hi=1e15),
                soc=_number(body, "soc", lo=0, hi=100, optional=True),
                seq=_int(body, "seq"),
                ts=_int(body, "ts"),
                epoch=_int(body, "epoch"),
            )
        case ["commands"]:
            args = _get(body, "args", dict, optional=True, default={})
            return CommandRequest(
                station_id=sid,
                id=CorrelationId(_ident(body, "id")),
                command=_enum(body, "command", CommandName),
                evse_id=EvseId(_ident(body, "evse_id")),
                expires_at=_int(body, "expires_at"),
                args=dict(args),
                ts=_int(body, "ts") if body.get("ts") is not None else 0,
            )
        case ["replies"]:
            evse_id = _ident(body, "evse_id")
            raw_info = body.get("evse")
            info = None
            if raw_info is not None:
                if not isinstance(raw_info, dict):
                    raise ProtocolError("field 'evse' must be an object")
                info = _parse_info(raw_info, evse_id)
            reason = _get(body, "reason", str, optional=True)
            return CommandReply(
                station_id=sid,
                id=CorrelationId(_ident(body, "id")),
                command=_enum(body, "command", CommandName),
                evse_id=EvseId(evse_id),
                accepted=_get(body, "accepted", bool),
                reason=reason[:200] if reason is not None else None,
                info=info,
                ts=_int(body, "ts") if body.get("ts") is not None else 0,
            )
    raise ProtocolError(f"unknown topic {topic[:200]!r}")


# --------------------------------------------------------------------------- command arguments


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
                session_id=SessionId(_ident(a, "session_id")),
                target_soc=_number(a, "target_soc", lo=1, hi=100, optional=True),
                reservation_id=_ident(a, "reservation_id", optional=True),
            )
        case CommandName.STOP:
            return StopArgs(session_id=_ident(a, "session_id", optional=True))
        case CommandName.MAINTENANCE:
            return MaintenanceArgs(enabled=_get(a, "enabled", bool))
        case CommandName.RESERVE:
            expires = _get(a, "expires_at", int, optional=True)
            return ReserveArgs(reservation_id=_ident(a, "reservation_id"), expires_at=expires)
        case CommandName.CANCEL_RESERVATION:
            return CancelReservationArgs(reservation_id=_ident(a, "reservation_id", optional=True))
    return None


def args_dict(args: CommandArgs) -> dict[str, Any]:
    """The wire form of typed command arguments (``None`` fields left out)."""
    if args is None:
        return {}
    return {k: v for k, v in asdict(args).items() if v is not None}
