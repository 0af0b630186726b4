"""The node-gateway contract: its topics and messages (``docs/node-protocol.md``).

The node (the actors and the storage writes) publishes what gateways read, and answers the
commands they send; a gateway holds no actor. Both sides talk through the broker, on the
node's own broker account, under :data:`NODE_ROOT`, which no station's ACL reaches (a
station may use only ``smartcharge/<version>/stations/<its id>/...``).

- ``.../evses/<evse id>``, retained: one EVSE as the read model has it (:class:`EvseRecord`);
- ``.../station/<station id>``, retained: one station (:class:`StationRecord`);
- ``.../reservations/<evse id>``, retained: the EVSE's active reservation (an empty retained
  message clears it);
- ``.../live``: the live events that are not EVSE changes (stations, alerts, notifications);
- ``.../alive``, retained: ``{"online": true}`` while the node runs (its last will says
  ``false``);
- ``.../requests``: a gateway's call (:class:`Request`), answered on the gateway's own
  ``.../replies/<client id>`` (:class:`Reply`).

Every message is one JSON object. Both sides import this module, so the shapes cannot drift.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Final

from actors.charging import Caller, Started
from actors.evse_state import EvseState
from actors.live import LiveEvent
from actors.messages import CommandOutcome
from actors.reservations import Reservation
from actors.state_recorder import (
    descriptor_from_json,
    descriptor_to_json,
    state_from_json,
    state_to_json,
)
from protocol import (
    NODE_REQUESTS_TOPIC,
    NODE_ROOT,
    CommandName,
    EvseId,
    EvseInfo,
    StationDescriptor,
    evse_values,
)
from storage import Alert, errors

__all__ = [
    "ALIVE_TOPIC",
    "EVSES_FILTER",
    "LIVE_TOPIC",
    "NODE_ROOT",
    "OPS",
    "REQUESTS_TOPIC",
    "RESERVATIONS_FILTER",
    "STATIONS_FILTER",
    "EvseRecord",
    "Reply",
    "Request",
    "StationRecord",
    "decode_error",
    "decode_result",
    "encode_error",
    "encode_result",
    "evse_topic",
    "live_from_json",
    "live_to_json",
    "replies_topic",
    "reservation_from_json",
    "reservation_topic",
    "station_topic",
]

EVSES_FILTER: Final = f"{NODE_ROOT}/evses/+"
STATIONS_FILTER: Final = f"{NODE_ROOT}/station/+"
RESERVATIONS_FILTER: Final = f"{NODE_ROOT}/reservations/+"
LIVE_TOPIC: Final = f"{NODE_ROOT}/live"
ALIVE_TOPIC: Final = f"{NODE_ROOT}/alive"
REQUESTS_TOPIC: Final = NODE_REQUESTS_TOPIC

MAX_REQUEST_BYTES: Final = 16_384
"""A request larger than this is dropped (and counted) unread."""


def evse_topic(evse_id: str) -> str:
    return f"{NODE_ROOT}/evses/{evse_id}"


def station_topic(station_id: str) -> str:
    return f"{NODE_ROOT}/station/{station_id}"


def reservation_topic(evse_id: str) -> str:
    return f"{NODE_ROOT}/reservations/{evse_id}"


def replies_topic(client_id: str) -> str:
    return f"{NODE_ROOT}/replies/{client_id}"


def last_level(topic: str) -> str:
    return topic.rsplit("/", 1)[-1]


def dumps(data: Mapping[str, Any]) -> bytes:
    return json.dumps(data, separators=(",", ":")).encode()


# --------------------------------------------------------------------------- read model


@dataclass(frozen=True, slots=True, kw_only=True)
class EvseRecord:
    """One EVSE of the read model, and the driver of its running session (gateways only:
    the public views never show it)."""

    state: EvseState
    alert: str | None = None
    updated_at: float
    driver_id: str | None = None

    def to_json(self) -> bytes:
        return dumps(
            {
                "state": state_to_json(self.state),
                "alert": self.alert,
                "updated_at": self.updated_at,
                "driver_id": self.driver_id,
            }
        )

    @classmethod
    def from_json(cls, payload: bytes) -> EvseRecord:
        data = json.loads(payload)
        return cls(
            state=state_from_json(data["state"]),
            alert=data.get("alert"),
            updated_at=float(data["updated_at"]),
            driver_id=data.get("driver_id"),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class StationRecord:
    station: StationDescriptor
    online: bool

    def to_json(self) -> bytes:
        return dumps({"station": descriptor_to_json(self.station), "online": self.online})

    @classmethod
    def from_json(cls, payload: bytes) -> StationRecord:
        data = json.loads(payload)
        return cls(station=descriptor_from_json(data["station"]), online=bool(data["online"]))


def reservation_from_json(payload: bytes) -> Reservation:
    data = json.loads(payload)
    return Reservation(
        id=str(data["id"]),
        driver_id=str(data["driver_id"]),
        evse_id=str(data["evse_id"]),
        created_at=int(data["created_at"]),
        expires_at=int(data["expires_at"]),
    )


def reservation_to_json(reservation: Reservation) -> bytes:
    return dumps(asdict(reservation))


def live_to_json(event: LiveEvent) -> bytes:
    """A live event that carries a mapping (EVSE events travel as :class:`EvseRecord`)."""
    assert not isinstance(event.data, EvseState)
    return dumps(
        {
            "kind": event.kind,
            "data": dict(event.data),
            "user_id": event.user_id,
            "public": event.public,
        }
    )


def live_from_json(payload: bytes) -> tuple[str, Mapping[str, Any], str | None, bool]:
    data = json.loads(payload)
    if not isinstance(data.get("data"), dict):
        raise ValueError("a live event's data is an object")
    return str(data["kind"]), data["data"], data.get("user_id"), bool(data.get("public"))


# --------------------------------------------------------------------------- requests


OPS: Final = frozenset(
    {
        "reservation",
        "reserve",
        "cancel_reservation",
        "start",
        "stop",
        "set_maintenance",
        "info",
        "ack_alert",
    }
)
"""The :class:`~actors.charging.ChargingService` methods a gateway may call, and
``ack_alert`` (:meth:`~actors.alert_log.AlertLog.ack_alert`)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Request:
    """A gateway's call: ``op`` on the node's ChargingService, as ``caller`` (``None``: the
    call takes no caller), with keyword ``args``. The node runs a request at most once (by
    ``id``) and never after ``expires_at`` (epoch ms): a late request is dropped unrun."""

    id: str
    reply_to: str
    expires_at: int
    op: str
    caller: Caller | None = None
    args: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> bytes:
        caller = None if self.caller is None else asdict(self.caller)
        return dumps(
            {
                "id": self.id,
                "reply_to": self.reply_to,
                "expires_at": self.expires_at,
                "op": self.op,
                "caller": caller,
                "args": dict(self.args),
            }
        )

    @classmethod
    def from_json(cls, payload: bytes) -> Request:
        """Raises :class:`ValueError` (or ``KeyError``/``TypeError``) for anything malformed."""
        if len(payload) > MAX_REQUEST_BYTES:
            raise ValueError("request too large")
        data = json.loads(payload)
        op, caller, args = data["op"], data.get("caller"), data.get("args") or {}
        if op not in OPS or not isinstance(args, dict):
            raise ValueError(f"unknown op {op!r}")
        if not str(data["reply_to"]).startswith(f"{NODE_ROOT}/replies/"):
            raise ValueError("a reply goes to a replies topic")
        return cls(
            id=str(data["id"]),
            reply_to=str(data["reply_to"]),
            expires_at=int(data["expires_at"]),
            op=op,
            caller=None
            if caller is None
            else Caller(user_id=str(caller["user_id"]), operator=bool(caller.get("operator"))),
            args=args,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Reply:
    id: str
    result: Any = None
    error: Mapping[str, str] | None = None

    def to_json(self) -> bytes:
        return dumps({"id": self.id, "result": self.result, "error": self.error})

    @classmethod
    def from_json(cls, payload: bytes) -> Reply:
        data = json.loads(payload)
        return cls(id=str(data["id"]), result=data.get("result"), error=data.get("error"))


def _outcome_json(outcome: CommandOutcome) -> dict[str, Any]:
    info = (
        None
        if outcome.info is None
        else {"evse_id": outcome.info.evse_id, **evse_values(outcome.info)}
    )
    if info is not None:
        for key, value in info.items():
            if key in ("status", "stop_reason") and value is not None:
                info[key] = str(value)
    return {
        "command": str(outcome.command),
        "accepted": outcome.accepted,
        "reason": outcome.reason,
        "info": info,
        "state": state_to_json(outcome.state),
    }


def _outcome(data: Mapping[str, Any]) -> CommandOutcome:
    raw = data.get("info")
    info = None
    if raw is not None:
        state = state_from_json(
            {**data["state"], **{k: v for k, v in raw.items() if k != "evse_id"}}
        )
        info = EvseInfo(evse_id=EvseId(str(raw["evse_id"])), **evse_values(state))
    return CommandOutcome(
        command=CommandName(data["command"]),
        accepted=bool(data["accepted"]),
        reason=data.get("reason"),
        info=info,
        state=state_from_json(data["state"]),
    )


def encode_result(value: Any) -> Any:
    """An op's result as JSON: ``None``, a :class:`Reservation`, :class:`Started` or
    :class:`CommandOutcome`."""
    if value is None:
        return None
    if isinstance(value, Reservation):
        return {"type": "reservation", **asdict(value)}
    if isinstance(value, Started):
        return {
            "type": "started",
            "session_id": value.session_id,
            "outcome": _outcome_json(value.outcome),
        }
    if isinstance(value, CommandOutcome):
        return {"type": "outcome", **_outcome_json(value)}
    if isinstance(value, Alert):
        return {"type": "alert", **value.to_json()}
    raise TypeError(f"cannot send a {type(value).__name__}")


def decode_result(data: Any) -> Any:
    if data is None:
        return None
    kind = data["type"]
    if kind == "reservation":
        return reservation_from_json(dumps(data))
    if kind == "started":
        return Started(session_id=str(data["session_id"]), outcome=_outcome(data["outcome"]))
    if kind == "outcome":
        return _outcome(data)
    if kind == "alert":
        return Alert(**{k: v for k, v in data.items() if k != "type"})
    raise ValueError(f"unknown result type {kind!r}")


_ERRORS: Final = {
    cls.__name__: cls
    for cls in (
        errors.Conflict,
        errors.Forbidden,
        errors.NotFound,
        errors.UnknownEvseError,
        errors.StationOfflineError,
        errors.CommandTimeoutError,
        errors.ActorUnavailableError,
        errors.StorageUnavailableError,
    )
}


def encode_error(exc: errors.SmartchargeError) -> dict[str, str]:
    """An error a gateway can raise again as the same class (else as a plain
    :class:`~storage.errors.SmartchargeError`, an HTTP 500)."""
    name = type(exc).__name__
    return {"type": name if name in _ERRORS else "SmartchargeError", "message": str(exc)}


def decode_error(data: Mapping[str, str]) -> errors.SmartchargeError:
    cls = _ERRORS.get(str(data.get("type")), errors.SmartchargeError)
    return cls(str(data.get("message", "")))
