"""OCPP 1.6J <-> protocol v2: the pure mapping functions of the OCPP translator.

``gateway.ocpp_server`` makes each connected OCPP charge point look to the CSMS exactly like
an MQTT station of protocol v2 (``docs/protocol.md``); this module holds what needs no socket:
statuses, stop reasons, meter samples, the idTag sent for a remote start, the birth and status
messages built from a charge point's connectors, and the replies to our commands.
``docs/ocpp.md`` describes the mapping.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Final

from protocol import (
    CommandReply,
    CommandRequest,
    EvseDescriptor,
    EvseId,
    EvseInfo,
    EvseStatus,
    StationBirth,
    StationDescriptor,
    StationId,
    StopReason,
    valid_station_id,
)

__all__ = [
    "DEFAULT_MAX_POWER_W",
    "IN_SESSION",
    "MAX_CONNECTORS",
    "MAX_ENERGY_WH",
    "OCPP_PATH_PREFIX",
    "MeterSample",
    "basic_credentials",
    "birth",
    "charge_point_id",
    "charging_profile",
    "evse_status",
    "id_tag_for",
    "idle_info",
    "iso",
    "meter_sample",
    "reply",
    "stop_reason",
    "with_status",
]

OCPP_PATH_PREFIX: Final = "/ocpp/"
MAX_CONNECTORS: Final = 64
"""A station has 1 to 64 EVSEs (``docs/protocol.md`` 5.1): connector ids 1 to 64."""
DEFAULT_MAX_POWER_W: Final = 22_000.0
"""OCPP 1.6 has no standard way to read a connector's rating: every EVSE is announced with
22 kW (a three-phase 32 A connector) until a later slice reads it from the configuration."""

IN_SESSION: Final = frozenset(
    {
        EvseStatus.PREPARING,
        EvseStatus.CHARGING,
        EvseStatus.SUSPENDED_EV,
        EvseStatus.SUSPENDED_EVSE,
        EvseStatus.FINISHING,
    }
)

_STATUSES: Final = {s.value: s for s in EvseStatus if s is not EvseStatus.OFFLINE}

_STOP_REASONS: Final = {
    "Remote": StopReason.REMOTE,
    "EVDisconnected": StopReason.EV_DISCONNECTED,
    "Local": StopReason.LOCAL,
}


def charge_point_id(path: str) -> StationId | None:
    """The charge point id of a ``/ocpp/{id}`` request path, or None if the path is not one
    or the id is not a valid station id (``docs/protocol.md``, section 2)."""
    if not path.startswith(OCPP_PATH_PREFIX):
        return None
    cp_id = path[len(OCPP_PATH_PREFIX) :].split("?", 1)[0]
    if not valid_station_id(cp_id):
        return None
    return StationId(cp_id)


def basic_credentials(header: str | None) -> tuple[str, str] | None:
    """``(user, password)`` of an HTTP ``Authorization: Basic`` header, or None."""
    if header is None:
        return None
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "basic" or not value:
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    if not sep:
        return None
    return user, password


def evse_status(ocpp_status: str) -> EvseStatus | None:
    """OCPP 1.6 ChargePointStatus -> our status (the same names; ``Offline`` is never
    reported by a station). None for anything else."""
    return _STATUSES.get(ocpp_status)


def stop_reason(ocpp_reason: str | None) -> StopReason:
    """StopTransaction ``reason`` -> our stop reason (absent means ``Local`` in OCPP 1.6)."""
    if ocpp_reason is None:
        return StopReason.LOCAL
    return _STOP_REASONS.get(ocpp_reason, StopReason.OTHER)


def id_tag_for(session_id: str) -> str:
    """The idTag of the RemoteStartTransaction for one of our sessions: OCPP 1.6 idTags are
    at most 20 characters, our session ids up to 64, so a digest of the id."""
    return "SC" + hashlib.sha256(session_id.encode()).hexdigest()[:18]


@dataclass(frozen=True, slots=True)
class MeterSample:
    energy_wh: float | None = None
    power_w: float | None = None
    soc: float | None = None


_ENERGY: Final = "Energy.Active.Import.Register"
_POWER: Final = "Power.Active.Import"
_SOC: Final = "SoC"
MAX_ENERGY_WH: Final = 1e15
_MAX: Final = {_ENERGY: MAX_ENERGY_WH, _POWER: 1e7, _SOC: 100.0}
"""What protocol v2 accepts (``docs/protocol.md`` 5.3); a value beyond is not a reading."""
_SCALE: Final = {"Wh": 1.0, "kWh": 1000.0, "W": 1.0, "kW": 1000.0, "Percent": 1.0}


def meter_sample(meter_value: list[dict[str, Any]]) -> MeterSample:
    """The last energy register (Wh), power (W) and SoC (%) of a MeterValues ``meterValue``
    list (the library's snake_case keys). Values with a ``phase`` are ignored (the totals are
    used), as are unknown measurands, unknown units and values that are not finite numbers."""
    found: dict[str, float] = {}
    for entry in meter_value:
        for sv in entry.get("sampled_value") or []:
            if not isinstance(sv, dict) or sv.get("phase"):
                continue
            measurand = sv.get("measurand") or _ENERGY
            default_unit = {"SoC": "Percent", _POWER: "W"}.get(measurand, "Wh")
            scale = _SCALE.get(sv.get("unit") or default_unit)
            if measurand not in (_ENERGY, _POWER, _SOC) or scale is None:
                continue
            try:
                value = float(sv.get("value", "")) * scale
            except (TypeError, ValueError):
                continue
            if not 0 <= value <= _MAX[measurand]:  # also NaN and infinities
                continue
            found[measurand] = value
    return MeterSample(energy_wh=found.get(_ENERGY), power_w=found.get(_POWER), soc=found.get(_SOC))


def birth(
    station_id: StationId, name: str, connectors: list[int], *, epoch: int, ts: int
) -> StationBirth:
    """The birth of a charge point whose connectors (ids > 0) are ``connectors``: one EVSE per
    connector, named by its connector id."""
    evses = tuple(
        EvseDescriptor(id=EvseId(str(c)), max_power_w=DEFAULT_MAX_POWER_W)
        for c in sorted(connectors)
    )
    station = StationDescriptor(id=station_id, name=name, lat=0.0, lon=0.0, evses=evses)
    return StationBirth(station=station, ts=ts, epoch=epoch)


def reply(
    request: CommandRequest,
    accepted: bool,
    info: EvseInfo | None,
    *,
    reason: str | None = None,
    ts: int,
) -> CommandReply:
    """Our reply to ``request`` (``info`` None only for ``unknown_evse``)."""
    return CommandReply(
        station_id=request.station_id,
        id=request.id,
        command=request.command,
        evse_id=request.evse_id,
        accepted=accepted,
        reason=None if accepted else reason,
        info=info,
        ts=ts,
    )


def idle_info(evse_id: str, energy_wh: float = 0.0) -> EvseInfo:
    return EvseInfo(evse_id=EvseId(evse_id), status=EvseStatus.AVAILABLE, energy_wh=energy_wh)


def with_status(info: EvseInfo, status: EvseStatus) -> EvseInfo:
    """``info`` in ``status``: session fields dropped outside a session, the reservation kept
    only while Reserved, the stop reason only while Finishing, maintenance while Unavailable."""
    session = status in IN_SESSION
    return replace(
        info,
        status=status,
        session_id=info.session_id if session else None,
        session_energy_wh=info.session_energy_wh if session else 0.0,
        target_soc=info.target_soc if session else None,
        power_w=info.power_w if status is EvseStatus.CHARGING else 0.0,
        soc=info.soc if session else None,
        reservation_id=info.reservation_id if status is EvseStatus.RESERVED else None,
        stop_reason=info.stop_reason if status is EvseStatus.FINISHING else None,
        maintenance=status is EvseStatus.UNAVAILABLE,
    )


def iso(ms: int) -> str:
    """Epoch milliseconds as an OCPP dateTime (UTC, ``Z``)."""
    stamp = datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds")
    return stamp.replace("+00:00", "Z")


def charging_profile(
    profile_id: int,
    stack_level: int,
    limit_w: float,
    *,
    start_ms: int,
    valid_to_ms: int | None = None,
    transaction_id: int | None = None,
) -> dict[str, Any]:
    """An OCPP 1.6 ``csChargingProfiles`` of one period, ``limit_w`` in W (one decimal, as the
    schema wants) from ``start_ms``, until ``valid_to_ms`` if given: a TxDefaultProfile, or
    with ``transaction_id`` a TxProfile of that running transaction."""
    profile: dict[str, Any] = {
        "chargingProfileId": profile_id,
        "stackLevel": stack_level,
        "chargingProfilePurpose": "TxDefaultProfile" if transaction_id is None else "TxProfile",
        "chargingProfileKind": "Absolute",
        "chargingSchedule": {
            "chargingRateUnit": "W",
            "startSchedule": iso(start_ms),
            "chargingSchedulePeriod": [{"startPeriod": 0, "limit": round(limit_w, 1)}],
        },
    }
    if valid_to_ms is not None:
        profile["validTo"] = iso(valid_to_ms)
    if transaction_id is not None:
        profile["transactionId"] = transaction_id
    return profile
