"""Identifiers of protocol v2: station, EVSE, session and correlation ids, and EVSE keys.

An id usable in a topic level is 1-64 of ``A-Z a-z 0-9 _ . : -``, starting alphanumeric; a
station id has neither ``.`` nor ``:`` (``docs/protocol.md``, section 2).
"""

from __future__ import annotations

import re
from typing import Final, NewType

from protocol.errors import ProtocolError

__all__ = [
    "CorrelationId",
    "EvseId",
    "EvseKey",
    "SessionId",
    "StationId",
    "check_id",
    "check_station",
    "evse_key",
    "split_evse_key",
    "valid_evse_key",
    "valid_id",
    "valid_station_id",
]

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


def check_id(value: str, what: str) -> str:
    """``value`` if it is a :func:`valid_id`, else :class:`ProtocolError` naming ``what``."""
    if not valid_id(value):
        raise ProtocolError(f"invalid {what} {value!r}")
    return value


def check_station(value: str) -> str:
    """``value`` if it is a :func:`valid_station_id`, else :class:`ProtocolError`."""
    if not valid_station_id(value):
        raise ProtocolError(f"invalid station id {value!r}")
    return value
