"""Shared by the wire protocol v2 tests (tests/test_protocol_*.py): hypothesis settings and
strategies for every message, the reference bodies of each topic, and the helpers that parse,
reject and mutate them."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

import protocol as p

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# --------------------------------------------------------------------------- strategies

ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
ids = st.builds(
    lambda head, tail: head + tail,
    st.sampled_from(ALNUM),
    st.text(alphabet=ALNUM + "_.:-", max_size=63),
)
station_ids = ids.filter(lambda s: "." not in s and ":" not in s)
timestamps = st.integers(min_value=0, max_value=2**63 - 1)


def numbers(lo: float, hi: float) -> st.SearchStrategy[float]:
    return st.floats(min_value=lo, max_value=hi, allow_nan=False, allow_infinity=False)


percent = numbers(0, 100)
statuses = st.sampled_from([s for s in p.EvseStatus if s is not p.EvseStatus.OFFLINE])


@st.composite
def evse_descriptors(draw: st.DrawFn) -> p.EvseDescriptor:
    """An EVSE description; its minimum power, when drawn, is within ``[0, max_power_w]``."""
    max_power_w = draw(numbers(1, 1e7))
    descriptor = p.EvseDescriptor(
        id=draw(ids), connector=draw(st.text(max_size=32)), max_power_w=max_power_w
    )
    min_power_w = draw(st.none() | numbers(0, max_power_w))
    return descriptor if min_power_w is None else replace(descriptor, min_power_w=min_power_w)


stations = st.builds(
    p.StationDescriptor,
    id=station_ids,
    name=st.text(max_size=120),
    lat=numbers(-90, 90),
    lon=numbers(-180, 180),
    evses=st.lists(evse_descriptors(), min_size=1, max_size=6, unique_by=lambda e: e.id).map(tuple),
)


def evse_infos(evse_id: st.SearchStrategy[str] = ids) -> st.SearchStrategy[p.EvseInfo]:
    return st.builds(
        p.EvseInfo,
        evse_id=evse_id,
        status=statuses,
        soc=st.none() | percent,
        power_w=numbers(0, 1e7),
        energy_wh=numbers(0, 1e15),
        session_id=st.none() | ids,
        session_energy_wh=numbers(0, 1e15),
        target_soc=st.none() | percent,
        reservation_id=st.none() | ids,
        maintenance=st.booleans(),
        maintenance_pending=st.booleans(),
        stop_reason=st.none() | st.sampled_from(p.StopReason),
    )


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=8,
)

births = st.builds(p.StationBirth, station=stations, ts=timestamps, epoch=timestamps)
offlines = st.builds(
    p.StationOffline, station_id=station_ids, ts=timestamps, reason=st.text(max_size=64)
)
status_reports = st.builds(
    p.StatusReport,
    station_id=station_ids,
    info=evse_infos(),
    seq=timestamps,
    ts=timestamps,
    epoch=timestamps,
)
meter_values = st.builds(
    p.MeterValues,
    station_id=station_ids,
    evse_id=ids,
    session_id=st.none() | ids,
    power_w=numbers(0, 1e7),
    energy_wh=numbers(0, 1e15),
    soc=st.none() | percent,
    seq=timestamps,
    ts=timestamps,
    epoch=timestamps,
)
command_requests = st.builds(
    p.CommandRequest,
    station_id=station_ids,
    id=ids,
    command=st.sampled_from(p.CommandName),
    evse_id=ids,
    expires_at=timestamps,
    args=st.dictionaries(st.text(max_size=12), json_values, max_size=4),
    ts=timestamps,
)


@st.composite
def command_replies(draw: st.DrawFn) -> p.CommandReply:
    evse_id = draw(ids)
    accepted = draw(st.booleans())
    reason = None if accepted else draw(st.sampled_from(p.RejectReason) | st.text(max_size=200))
    return p.CommandReply(
        station_id=draw(station_ids),
        id=draw(ids),
        command=draw(st.sampled_from(p.CommandName)),
        evse_id=evse_id,
        accepted=accepted,
        reason=reason,
        info=draw(st.none() | evse_infos(st.just(evse_id))),
        ts=draw(timestamps),
    )


messages = st.one_of(
    births, offlines, status_reports, meter_values, command_requests, command_replies()
)

# --------------------------------------------------------------------------- helpers

STATE = p.state_topic("ST-1")
STATUS = p.status_topic("ST-1", "E1")
METER = p.meter_topic("ST-1", "E1")
COMMANDS = p.commands_topic("ST-1")
REPLIES = p.replies_topic("ST-1")

INFO = {
    "evse_id": "E1",
    "status": "Charging",
    "soc": 40.0,
    "power_w": 11000.0,
    "energy_wh": 1500.0,
    "session_id": "S-1",
    "session_energy_wh": 700.0,
    "target_soc": 80.0,
}
VALID_BODIES: dict[str, dict[str, Any]] = {
    "birth": {
        "v": 2,
        "online": True,
        "ts": 1,
        "epoch": 7,
        "station": {
            "id": "ST-1",
            "name": "Depot",
            "lat": 45.0,
            "lon": 9.0,
            "evses": [
                {"id": "E1", "connector": "CCS2", "max_power_w": 50000.0, "min_power_w": 4140.0}
            ],
        },
    },
    "offline": {"v": 2, "online": False, "ts": 1, "reason": "shutdown"},
    "status": {"v": 2, "epoch": 7, "seq": 3, "ts": 1, **INFO},
    "meter": {
        "v": 2,
        "epoch": 7,
        "seq": 4,
        "ts": 1,
        "evse_id": "E1",
        "session_id": "S-1",
        "power_w": 11000.0,
        "energy_wh": 1500.0,
        "soc": 41.0,
    },
    "command": {
        "v": 2,
        "id": "c-1",
        "command": "start",
        "evse_id": "E1",
        "ts": 1,
        "expires_at": 10_001,
        "args": {"session_id": "S-1"},
    },
    "reply": {
        "v": 2,
        "id": "c-1",
        "command": "start",
        "evse_id": "E1",
        "ts": 1,
        "accepted": True,
        "reason": None,
        "evse": INFO,
    },
}


def body_bytes(body: Any) -> bytes:
    return json.dumps(body).encode()


def assert_rejected(topic: str, payload: bytes) -> None:
    with pytest.raises(p.ProtocolError):
        p.parse(topic, payload)


def assert_valid_message(topic: str, message: p.Message) -> None:
    """A parsed message is one of the six types and survives its own round trip."""
    assert isinstance(
        message,
        p.StationBirth
        | p.StationOffline
        | p.StatusReport
        | p.MeterValues
        | p.CommandRequest
        | p.CommandReply,
    )
    again_topic, again_payload, _ = p.encode(message)
    assert again_topic == topic
    assert p.parse(again_topic, again_payload) == message
