"""Protocol v2 on the wire: :func:`encode` a message to ``(topic, payload, retain)``,
:func:`parse` a topic and payload back, and the limits both keep.

:func:`parse` only ever raises :class:`ProtocolError` (:class:`UnsupportedVersion` for a
version 1 station), whatever the bytes.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from typing import Any, Final

from protocol.errors import ProtocolError, UnsupportedVersion
from protocol.fields import enum_field, get_field, id_field, int_field, number_field
from protocol.ids import CorrelationId, EvseId, StationId, valid_id
from protocol.messages import (
    DEFAULT_MIN_POWER_W,
    CommandName,
    CommandReply,
    CommandRequest,
    EvseDescriptor,
    EvseInfo,
    EvseStatus,
    Message,
    MeterValues,
    StationBirth,
    StationDescriptor,
    StationOffline,
    StatusReport,
    StopReason,
    evse_values,
)
from protocol.topics import (
    PROTOCOL_VERSION,
    commands_topic,
    meter_topic,
    replies_topic,
    split_topic,
    state_topic,
    status_topic,
)

__all__ = ["MAX_FUTURE_SKEW_MS", "MAX_PAYLOAD_BYTES", "encode", "parse"]

MAX_PAYLOAD_BYTES: Final = 64 * 1024
MAX_FUTURE_SKEW_MS: Final = 300_000
"""A report stamped more than this ahead of the CSMS's clock is refused (5 minutes)."""


# --------------------------------------------------------------------------- encoding


def _info_dict(info: EvseInfo) -> dict[str, Any]:
    values = {k: v for k, v in evse_values(info).items() if v is not None}
    return {"evse_id": info.evse_id, **values}


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


def _parse_info(body: dict[str, Any], evse_id: str | None = None) -> EvseInfo:
    info = EvseInfo(
        evse_id=EvseId(id_field(body, "evse_id")),
        status=enum_field(body, "status", EvseStatus),
        soc=number_field(body, "soc", lo=0, hi=100, optional=True),
        power_w=number_field(body, "power_w", lo=0, hi=1e7, optional=True, default=0.0),
        energy_wh=number_field(body, "energy_wh", lo=0, hi=1e15, optional=True, default=0.0),
        session_id=id_field(body, "session_id", optional=True),
        session_energy_wh=number_field(
            body, "session_energy_wh", lo=0, hi=1e15, optional=True, default=0.0
        ),
        target_soc=number_field(body, "target_soc", lo=0, hi=100, optional=True),
        reservation_id=id_field(body, "reservation_id", optional=True),
        maintenance=get_field(body, "maintenance", bool, optional=True, default=False),
        maintenance_pending=get_field(
            body, "maintenance_pending", bool, optional=True, default=False
        ),
        stop_reason=enum_field(body, "stop_reason", StopReason, optional=True),
    )
    if info.status is EvseStatus.OFFLINE:
        raise ProtocolError("a station never reports 'Offline': that status is the CSMS's own")
    if evse_id is not None and info.evse_id != evse_id:
        raise ProtocolError(f"evse_id {info.evse_id!r} does not match topic's {evse_id!r}")
    return info


def _parse_station(body: Any) -> StationDescriptor:
    if not isinstance(body, dict):
        raise ProtocolError("field 'station' must be an object")
    raw_evses = get_field(body, "evses", list)
    if not 1 <= len(raw_evses) <= 64:
        raise ProtocolError("a station has 1 to 64 EVSEs")
    evses = []
    for raw in raw_evses:
        if not isinstance(raw, dict):
            raise ProtocolError("each EVSE must be an object")
        max_power_w = number_field(raw, "max_power_w", lo=1, hi=1e7)
        min_power_w = number_field(raw, "min_power_w", lo=0, hi=max_power_w, optional=True)
        if min_power_w is None:  # a station of before set_limit: the default, at most the max
            min_power_w = min(DEFAULT_MIN_POWER_W, max_power_w)
        evses.append(
            EvseDescriptor(
                id=EvseId(id_field(raw, "id")),
                connector=get_field(raw, "connector", str, optional=True, default="Type2")[:32],
                max_power_w=max_power_w,
                min_power_w=min_power_w,
            )
        )
    if len({e.id for e in evses}) != len(evses):
        raise ProtocolError("EVSE ids of a station must be unique")
    return StationDescriptor(
        id=StationId(id_field(body, "id")),
        name=get_field(body, "name", str)[:120],
        lat=number_field(body, "lat", lo=-90, hi=90),
        lon=number_field(body, "lon", lo=-180, hi=180),
        evses=tuple(evses),
    )


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
    parts = split_topic(topic)
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
            online = get_field(body, "online", bool)
            ts = int_field(body, "ts")
            if not online:
                reason = get_field(body, "reason", str, optional=True, default="connection_lost")
                return StationOffline(station_id=sid, ts=ts, reason=reason[:64])
            station = _parse_station(body.get("station"))
            if station.id != sid:
                raise ProtocolError(f"station id {station.id!r} does not match topic's {sid!r}")
            return StationBirth(station=station, ts=ts, epoch=int_field(body, "epoch"))
        case ["evses", evse_id, "status"]:
            return StatusReport(
                station_id=sid,
                info=_parse_info(body, evse_id),
                seq=int_field(body, "seq"),
                ts=int_field(body, "ts"),
                epoch=int_field(body, "epoch"),
            )
        case ["evses", evse_id, "meter"]:
            fast = _fast_meter(sid, evse_id, body)
            if fast is not None:
                return fast
            if id_field(body, "evse_id") != evse_id:
                raise ProtocolError("evse_id does not match the topic")
            return MeterValues(
                station_id=sid,
                evse_id=EvseId(evse_id),
                session_id=id_field(body, "session_id", optional=True),
                power_w=number_field(body, "power_w", lo=0, hi=1e7),
                energy_wh=number_field(body, "energy_wh", lo=0, hi=1e15),
                soc=number_field(body, "soc", lo=0, hi=100, optional=True),
                seq=int_field(body, "seq"),
                ts=int_field(body, "ts"),
                epoch=int_field(body, "epoch"),
            )
        case ["commands"]:
            args = get_field(body, "args", dict, optional=True, default={})
            return CommandRequest(
                station_id=sid,
                id=CorrelationId(id_field(body, "id")),
                command=enum_field(body, "command", CommandName),
                evse_id=EvseId(id_field(body, "evse_id")),
                expires_at=int_field(body, "expires_at"),
                args=dict(args),
                ts=int_field(body, "ts") if body.get("ts") is not None else 0,
            )
        case ["replies"]:
            evse_id = id_field(body, "evse_id")
            raw_info = body.get("evse")
            info = None
            if raw_info is not None:
                if not isinstance(raw_info, dict):
                    raise ProtocolError("field 'evse' must be an object")
                info = _parse_info(raw_info, evse_id)
            reason = get_field(body, "reason", str, optional=True)
            return CommandReply(
                station_id=sid,
                id=CorrelationId(id_field(body, "id")),
                command=enum_field(body, "command", CommandName),
                evse_id=EvseId(evse_id),
                accepted=get_field(body, "accepted", bool),
                reason=reason[:200] if reason is not None else None,
                info=info,
                ts=int_field(body, "ts") if body.get("ts") is not None else 0,
            )
    raise ProtocolError(f"unknown topic {topic[:200]!r}")
