"""Wire protocol v2 (the ``protocol`` package): round trips, validation and fuzzing.

The parser faces bytes from any station on the broker, so besides round trips these tests
prove that :func:`protocol.parse` only ever raises :class:`protocol.ProtocolError`, and that
``docs/protocol.md`` shows only examples the code accepts.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import protocol as p

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

DOC = Path(__file__).resolve().parent.parent / "docs" / "protocol.md"

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

evse_descriptors = st.builds(
    p.EvseDescriptor, id=ids, connector=st.text(max_size=32), max_power_w=numbers(1, 1e7)
)
stations = st.builds(
    p.StationDescriptor,
    id=station_ids,
    name=st.text(max_size=120),
    lat=numbers(-90, 90),
    lon=numbers(-180, 180),
    evses=st.lists(evse_descriptors, min_size=1, max_size=6, unique_by=lambda e: e.id).map(tuple),
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

typed_args = st.one_of(
    st.builds(
        p.StartArgs,
        session_id=ids,
        target_soc=st.none() | numbers(1, 100),
        reservation_id=st.none() | ids,
    ),
    st.builds(p.StopArgs, session_id=st.none() | ids),
    st.builds(p.MaintenanceArgs, enabled=st.booleans()),
    st.builds(p.ReserveArgs, reservation_id=ids, expires_at=st.none() | timestamps),
    st.builds(p.CancelReservationArgs, reservation_id=st.none() | ids),
)
COMMAND_OF_ARGS = {
    p.StartArgs: p.CommandName.START,
    p.StopArgs: p.CommandName.STOP,
    p.MaintenanceArgs: p.CommandName.MAINTENANCE,
    p.ReserveArgs: p.CommandName.RESERVE,
    p.CancelReservationArgs: p.CommandName.CANCEL_RESERVATION,
}

# --------------------------------------------------------------------------- helpers

STATE = p.state_topic("ST-1")
STATUS = p.status_topic("ST-1", "E1")
METER = p.meter_topic("ST-1", "E1")
COMMANDS = p.commands_topic("ST-1")
REPLIES = p.replies_topic("ST-1")
ALL_TOPICS = [STATE, STATUS, METER, COMMANDS, REPLIES]

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
            "evses": [{"id": "E1", "connector": "CCS2", "max_power_w": 50000.0}],
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
TOPIC_OF = {
    "birth": STATE,
    "offline": STATE,
    "status": STATUS,
    "meter": METER,
    "command": COMMANDS,
    "reply": REPLIES,
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


def parse_or_reject(topic: str, payload: bytes) -> None:
    try:
        message = p.parse(topic, payload)
    except p.ProtocolError:
        return
    assert_valid_message(topic, message)


def set_path(body: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """Copy of ``body`` with ``value`` at a dotted path (``station.evses.0.max_power_w``)."""
    copy = json.loads(json.dumps(body))
    *parents, last = path.split(".")
    node: Any = copy
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    node[last] = value
    return copy


def dict_slots(node: Any) -> list[dict[str, Any]]:
    """Every protocol object inside a decoded payload, the payload itself first.

    A command's ``args`` is left out: the parser keeps it verbatim for :func:`command_args`.
    """
    found: list[dict[str, Any]] = []
    if isinstance(node, dict):
        found.append(node)
        for key, value in node.items():
            if key != "args":
                found.extend(dict_slots(value))
    elif isinstance(node, list):
        for value in node:
            found.extend(dict_slots(value))
    return found


# --------------------------------------------------------------------------- round trips


@FAST
@given(messages)
def test_every_message_survives_encode_then_parse(message: p.Message) -> None:
    topic, payload, _ = p.encode(message)
    assert p.parse(topic, payload) == message


@FAST
@given(messages)
def test_encoded_payloads_start_with_version_two_and_fit_the_size_limit(
    message: p.Message,
) -> None:
    _, payload, _ = p.encode(message)
    assert payload.startswith(b'{"v":2,')
    assert len(payload) <= p.MAX_PAYLOAD_BYTES


@FAST
@given(messages)
def test_only_state_and_status_are_retained(message: p.Message) -> None:
    topic, _, retain = p.encode(message)
    assert retain == topic.endswith(("/state", "/status"))


def test_topics_follow_the_documented_tree() -> None:
    assert p.state_topic("ST-1") == "smartcharge/v2/stations/ST-1/state"
    assert p.status_topic("ST-1", "E1") == "smartcharge/v2/stations/ST-1/evses/E1/status"
    assert p.meter_topic("ST-1", "E1") == "smartcharge/v2/stations/ST-1/evses/E1/meter"
    assert p.commands_topic("ST-1") == "smartcharge/v2/stations/ST-1/commands"
    assert p.replies_topic("ST-1") == "smartcharge/v2/stations/ST-1/replies"
    assert p.station_topic_filter() == "smartcharge/v2/stations/+/+"
    assert p.evse_topic_filter("ST-1") == "smartcharge/v2/stations/ST-1/evses/+/+"
    assert p.all_station_topics_filter("ST-1") == "smartcharge/v2/stations/ST-1/#"
    assert p.station_commands_filter() == "smartcharge/v2/stations/+/commands"
    assert p.station_publish_filters() == (
        "smartcharge/v2/stations/+/state",
        "smartcharge/v2/stations/+/evses/+/status",
        "smartcharge/v2/stations/+/evses/+/meter",
        "smartcharge/v2/stations/+/replies",
    )


def test_the_broker_acl_is_built_from_the_protocols_filters() -> None:
    """``docs/broker-security.md`` shows these lines: any version, the station's own topics."""
    from gateway.broker_accounts import ACL_PATTERNS, acl_text

    assert ACL_PATTERNS == (
        ("write", "smartcharge/+/stations/%u/state"),
        ("write", "smartcharge/+/stations/%u/evses/+/status"),
        ("write", "smartcharge/+/stations/%u/evses/+/meter"),
        ("write", "smartcharge/+/stations/%u/replies"),
        ("read", "smartcharge/+/stations/%u/commands"),
    )
    assert "\ntopic readwrite smartcharge/#\n" in acl_text()


def test_a_station_offline_without_reason_means_the_connection_was_lost() -> None:
    message = p.parse(STATE, b'{"v":2,"online":false,"ts":5}')
    assert message == p.StationOffline(station_id="ST-1", ts=5, reason="connection_lost")


# --------------------------------------------------------------------------- ids and topics

invalid_ids = st.text(max_size=70).filter(lambda s: not p.valid_id(s))
BUILDERS = [
    lambda bad: p.state_topic(bad),
    lambda bad: p.status_topic(bad, "E1"),
    lambda bad: p.status_topic("ST-1", bad),
    lambda bad: p.meter_topic(bad, "E1"),
    lambda bad: p.meter_topic("ST-1", bad),
    lambda bad: p.commands_topic(bad),
    lambda bad: p.replies_topic(bad),
]


@pytest.mark.parametrize("bad", ["", "-lead", "_lead", "a/b", "a+b", "a#", "a b", "é", "a" * 65])
def test_topic_builders_reject_each_kind_of_invalid_id(bad: str) -> None:
    assert not p.valid_id(bad)
    for build in BUILDERS:
        with pytest.raises(p.ProtocolError):
            build(bad)


@FAST
@given(invalid_ids)
def test_topic_builders_reject_any_invalid_id(bad: str) -> None:
    for build in BUILDERS:
        with pytest.raises(p.ProtocolError):
            build(bad)


@FAST
@given(station_ids)
def test_valid_ids_have_up_to_64_safe_characters(good: str) -> None:
    assert p.valid_id(good)
    assert p.valid_station_id(good)
    assert p.state_topic(good).split("/")[3] == good


STATION_BUILDERS = [
    lambda bad: p.state_topic(bad),
    lambda bad: p.status_topic(bad, "E1"),
    lambda bad: p.meter_topic(bad, "E1"),
    lambda bad: p.commands_topic(bad),
    lambda bad: p.replies_topic(bad),
]


@pytest.mark.parametrize("bad", ["ST.1", "a.", "a.b.c", "ST:1", "a:"])
def test_a_station_id_may_not_hold_a_dot_or_colon_but_an_evse_id_may(bad: str) -> None:
    assert p.valid_id(bad)
    assert not p.valid_station_id(bad)
    for build in STATION_BUILDERS:
        with pytest.raises(p.ProtocolError):
            build(bad)
    assert p.status_topic("ST-1", bad).endswith(f"/evses/{bad}/status")


# --------------------------------------------------------------------------- EVSE keys


def test_the_csms_names_an_evse_by_its_station_and_its_own_id() -> None:
    assert p.evse_key("ST-0042", "1") == "ST-0042.1"
    assert p.split_evse_key("ST-0042.1") == ("ST-0042", "1")
    assert p.split_evse_key("ST-0042.bay.2") == ("ST-0042", "bay.2")  # the first dot splits


@FAST
@given(station_id=station_ids, evse_id=ids)
def test_an_evse_key_splits_back_into_its_station_and_evse(station_id: str, evse_id: str) -> None:
    key = p.evse_key(station_id, evse_id)
    assert p.valid_evse_key(key)
    assert p.split_evse_key(key) == (station_id, evse_id)


@FAST
@given(a=st.tuples(station_ids, ids), b=st.tuples(station_ids, ids))
def test_two_evses_share_a_key_only_if_they_are_the_same(
    a: tuple[str, str], b: tuple[str, str]
) -> None:
    assert (p.evse_key(*a) == p.evse_key(*b)) == (a == b)


@pytest.mark.parametrize(
    "key", ["", "ST-1", "ST-1.", ".1", "ST 1.1", "ST-1.a/b", "é.1", None, 42, "a" * 65 + ".1"]
)
def test_what_is_not_an_evse_key_is_refused(key: Any) -> None:
    assert not p.valid_evse_key(key)
    with pytest.raises(p.ProtocolError):
        p.split_evse_key(key)


@FUZZ
@given(st.text(max_size=140))
def test_split_evse_key_only_raises_protocol_error(key: str) -> None:
    try:
        station_id, evse_id = p.split_evse_key(key)
    except p.ProtocolError:
        return
    assert p.evse_key(station_id, evse_id) == key


def test_valid_id_accepts_the_longest_id_and_refuses_non_strings() -> None:
    assert p.valid_id("a" * 64)
    assert not p.valid_id(None)
    assert not p.valid_id(42)


@pytest.mark.parametrize(
    "topic",
    [
        "smartcharge/v2/stations/ST-1/unknown",
        "smartcharge/v2/stations/ST-1/evses/E1/unknown",
        "smartcharge/v2/stations/ST-1/state/extra",
        "smartcharge/v2/stations/ST-1",
        "smartcharge/v1/stations/ST-1/state",
        "smartcharge/v3/stations/ST-1/state",
        "smartcharge/v2/stations/+/state",
        "smartcharge/v2/stations/ST-1/evses/#/status",
        "smartcharge/v2/stations//state",
        "smartcharge/v2/stations/ST.1/state",
    ],
)
def test_parse_rejects_topics_outside_the_tree(topic: str) -> None:
    assert_rejected(topic, body_bytes(VALID_BODIES["offline"]))


# --------------------------------------------------------------------------- fuzzing


@FUZZ
@pytest.mark.parametrize("topic", ALL_TOPICS)
@given(payload=st.binary(max_size=300))
def test_parse_only_raises_protocol_error_on_any_bytes(topic: str, payload: bytes) -> None:
    parse_or_reject(topic, payload)


@FUZZ
@given(topic=st.text(max_size=80), payload=st.binary(max_size=50))
def test_parse_only_raises_protocol_error_on_any_topic(topic: str, payload: bytes) -> None:
    parse_or_reject(topic, payload)


@FAST
@given(topic=st.sampled_from(ALL_TOPICS), value=json_values)
def test_parse_only_raises_protocol_error_on_any_json_value(topic: str, value: Any) -> None:
    parse_or_reject(topic, body_bytes(value))


@FUZZ
@given(
    topic=st.sampled_from(ALL_TOPICS),
    fields=st.dictionaries(
        st.sampled_from(
            sorted(
                {
                    "online",
                    "ts",
                    "epoch",
                    "expires_at",
                    "station",
                    "reason",
                    "seq",
                    "evse_id",
                    "status",
                    "soc",
                    "power_w",
                    "energy_wh",
                    "session_id",
                    "id",
                    "command",
                    "args",
                    "accepted",
                    "evse",
                    "x",
                }
            )
        ),
        json_values,
    ),
)
def test_parse_only_raises_protocol_error_on_any_version_two_object(
    topic: str, fields: dict[str, Any]
) -> None:
    parse_or_reject(topic, body_bytes({"v": 2, **fields}))


@FUZZ
@given(message=messages, data=st.data())
def test_a_mutated_valid_message_is_either_rejected_or_still_valid(
    message: p.Message, data: st.DataObject
) -> None:
    topic, payload, _ = p.encode(message)
    body = json.loads(payload)
    target = data.draw(st.sampled_from(dict_slots(body)))
    key = data.draw(st.sampled_from([*target, "v", "extra"]))
    if data.draw(st.booleans()):
        target.pop(key, None)
    else:
        target[key] = data.draw(json_values)
    parse_or_reject(topic, body_bytes(body))


@FAST
@given(message=messages, extra=st.dictionaries(st.text(min_size=1).map("x_".__add__), json_values))
def test_unknown_fields_are_ignored_for_forward_compatibility(
    message: p.Message, extra: dict[str, Any]
) -> None:
    topic, payload, _ = p.encode(message)
    body = json.loads(payload)
    for slot in dict_slots(body):
        slot.update(extra)
    assert p.parse(topic, body_bytes(body)) == message


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize("kind", sorted(VALID_BODIES))
def test_the_reference_bodies_are_valid(kind: str) -> None:
    assert_valid_message(TOPIC_OF[kind], p.parse(TOPIC_OF[kind], body_bytes(VALID_BODIES[kind])))


@pytest.mark.parametrize(
    ("topic", "kind"),
    [
        (p.state_topic("ST-2"), "birth"),
        (p.status_topic("ST-1", "E2"), "status"),
        (p.meter_topic("ST-1", "E2"), "meter"),
    ],
)
def test_ids_in_the_payload_that_disagree_with_the_topic_are_rejected(
    topic: str, kind: str
) -> None:
    assert_rejected(topic, body_bytes(VALID_BODIES[kind]))


def test_a_reply_whose_evse_info_names_another_evse_is_rejected() -> None:
    body = set_path(VALID_BODIES["reply"], "evse.evse_id", "E2")
    assert_rejected(REPLIES, body_bytes(body))


def test_a_birth_with_duplicate_or_no_evses_is_rejected() -> None:
    evse = VALID_BODIES["birth"]["station"]["evses"][0]
    assert_rejected(STATE, body_bytes(set_path(VALID_BODIES["birth"], "station.evses", [])))
    twice = set_path(VALID_BODIES["birth"], "station.evses", [evse, evse])
    assert_rejected(STATE, body_bytes(twice))


@pytest.mark.parametrize("kind", sorted(VALID_BODIES))
def test_oversize_payloads_are_rejected_and_the_limit_itself_is_accepted(kind: str) -> None:
    topic, body = TOPIC_OF[kind], VALID_BODIES[kind]
    padding = p.MAX_PAYLOAD_BYTES - len(body_bytes({**body, "pad": ""}))
    at_limit = body_bytes({**body, "pad": "x" * padding})
    assert len(at_limit) == p.MAX_PAYLOAD_BYTES
    assert_valid_message(topic, p.parse(topic, at_limit))
    assert_rejected(topic, body_bytes({**body, "pad": "x" * (padding + 1)}))


def test_a_station_reporting_offline_is_rejected() -> None:
    assert_rejected(STATUS, body_bytes({**VALID_BODIES["status"], "status": "Offline"}))
    reply = set_path(VALID_BODIES["reply"], "evse.status", "Offline")
    assert_rejected(REPLIES, body_bytes(reply))


@pytest.mark.parametrize("kind", sorted(VALID_BODIES))
@pytest.mark.parametrize("version", [None, 0, 1, 3, "2", 2.0, True, [2]])
def test_every_payload_must_carry_version_two(kind: str, version: Any) -> None:
    body = {k: v for k, v in VALID_BODIES[kind].items() if k != "v"}
    if version is not None:
        body["v"] = version
    assert_rejected(TOPIC_OF[kind], body_bytes(body))


@pytest.mark.parametrize("kind", sorted(VALID_BODIES))
def test_a_version_1_payload_is_refused_as_unsupported_naming_its_station(kind: str) -> None:
    with pytest.raises(p.UnsupportedVersion) as refused:
        p.parse(TOPIC_OF[kind], body_bytes({**VALID_BODIES[kind], "v": 1}))
    assert (refused.value.station_id, refused.value.version) == ("ST-1", 1)


@pytest.mark.parametrize("kind", sorted(VALID_BODIES))
def test_a_version_1_topic_is_refused_as_unsupported_naming_its_station(kind: str) -> None:
    legacy = TOPIC_OF[kind].replace("smartcharge/v2/", "smartcharge/v1/")
    with pytest.raises(p.UnsupportedVersion) as refused:
        p.parse(legacy, body_bytes({**VALID_BODIES[kind], "v": 1}))
    assert (refused.value.station_id, refused.value.version) == ("ST-1", 1)
    assert "version 1" in str(refused.value)


def test_the_csms_listens_on_version_1_state_topics_only_to_refuse_them() -> None:
    assert "smartcharge/v1/stations/+/state" in p.CSMS_SUBSCRIPTIONS
    assert all(t.startswith("smartcharge/v2/") for t in p.CSMS_SUBSCRIPTIONS[:-1])


@pytest.mark.parametrize("kind", sorted(VALID_BODIES))
def test_a_payload_with_a_byte_order_mark_is_refused(kind: str) -> None:
    assert_rejected(TOPIC_OF[kind], b"\xef\xbb\xbf" + body_bytes(VALID_BODIES[kind]))


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-32"])
def test_a_payload_in_another_encoding_than_utf_8_is_refused(encoding: str) -> None:
    assert_rejected(STATUS, json.dumps(VALID_BODIES["status"]).encode(encoding))


@pytest.mark.parametrize(
    ("kind", "field"),
    [("birth", "epoch"), ("status", "epoch"), ("meter", "epoch"), ("command", "expires_at")],
)
def test_the_epoch_and_expires_at_are_required(kind: str, field: str) -> None:
    body = {k: v for k, v in VALID_BODIES[kind].items() if k != field}
    assert_rejected(TOPIC_OF[kind], body_bytes(body))
    assert_rejected(TOPIC_OF[kind], body_bytes({**body, field: None}))


def test_a_station_offline_message_needs_no_epoch() -> None:
    assert isinstance(p.parse(STATE, body_bytes(VALID_BODIES["offline"])), p.StationOffline)


NUMBER_FIELDS = [
    ("birth", "ts"),
    ("birth", "epoch"),
    ("birth", "station.lat"),
    ("birth", "station.lon"),
    ("birth", "station.evses.0.max_power_w"),
    ("offline", "ts"),
    *[
        ("status", f)
        for f in (
            "epoch",
            "seq",
            "ts",
            "soc",
            "power_w",
            "energy_wh",
            "session_energy_wh",
            "target_soc",
        )
    ],
    *[("meter", f) for f in ("epoch", "seq", "ts", "soc", "power_w", "energy_wh")],
    ("command", "ts"),
    ("command", "expires_at"),
    ("reply", "ts"),
    ("reply", "evse.soc"),
    ("reply", "evse.power_w"),
]


@pytest.mark.parametrize(("kind", "path"), NUMBER_FIELDS)
@pytest.mark.parametrize("flag", [True, False])
def test_a_boolean_where_a_number_is_expected_is_rejected(kind: str, path: str, flag: bool) -> None:
    assert_rejected(TOPIC_OF[kind], body_bytes(set_path(VALID_BODIES[kind], path, flag)))


@pytest.mark.parametrize(("kind", "path"), NUMBER_FIELDS)
@pytest.mark.parametrize("value", [-1000, 1e16, "5", [], {}])
def test_a_number_field_out_of_range_or_of_another_type_is_rejected(
    kind: str, path: str, value: Any
) -> None:
    assert_rejected(TOPIC_OF[kind], body_bytes(set_path(VALID_BODIES[kind], path, value)))


@pytest.mark.parametrize("kind", sorted(VALID_BODIES))
@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e999", "-1e999"])
def test_nan_and_infinity_are_rejected_anywhere_in_a_payload(kind: str, literal: str) -> None:
    marker = "__number__"
    text = json.dumps({**VALID_BODIES[kind], "x_future": [marker]})
    assert_rejected(TOPIC_OF[kind], text.replace(f'"{marker}"', literal).encode())


@pytest.mark.parametrize(("kind", "path"), NUMBER_FIELDS)
@pytest.mark.parametrize("literal", ["NaN", "Infinity", "1e999", "1" + "0" * 400])
def test_nan_infinity_and_huge_numbers_in_number_fields_are_rejected(
    kind: str, path: str, literal: str
) -> None:
    marker = "__number__"
    text = json.dumps(set_path(VALID_BODIES[kind], path, marker))
    assert_rejected(TOPIC_OF[kind], text.replace(f'"{marker}"', literal).encode())


@pytest.mark.parametrize(
    ("kind", "path"),
    [(k, f) for k, f in NUMBER_FIELDS if f in ("ts", "seq", "epoch", "expires_at")],
)
def test_times_and_sequence_numbers_must_be_json_integers(kind: str, path: str) -> None:
    assert_rejected(TOPIC_OF[kind], body_bytes(set_path(VALID_BODIES[kind], path, 5.0)))


def test_encode_refuses_a_message_holding_nan() -> None:
    meter = p.MeterValues(
        station_id="ST-1",
        evse_id="E1",
        session_id=None,
        power_w=float("nan"),
        energy_wh=0.0,
        soc=None,
        seq=1,
        ts=1,
        epoch=1,
    )
    with pytest.raises(p.ProtocolError):
        p.encode(meter)


def test_null_is_the_same_as_an_absent_optional_field() -> None:
    body = {**VALID_BODIES["status"], "soc": None, "session_id": None, "stop_reason": None}
    report = p.parse(STATUS, body_bytes(body))
    assert isinstance(report, p.StatusReport)
    assert report.info.soc is None
    assert report.info.session_id is None
    command = {**VALID_BODIES["command"], "ts": None, "args": None}
    request = p.parse(COMMANDS, body_bytes(command))
    assert isinstance(request, p.CommandRequest)
    assert (request.ts, request.args) == (0, {})


# --------------------------------------------------------------------------- command arguments


def request(command: str, args: dict[str, Any]) -> p.CommandRequest:
    return p.CommandRequest(
        station_id="ST-1",
        id="c-1",
        command=p.CommandName(command),
        evse_id="E1",
        expires_at=1,
        args=args,
    )


@FAST
@given(typed_args)
def test_typed_command_args_survive_the_wire(args: p.CommandArgs) -> None:
    sent = request(COMMAND_OF_ARGS[type(args)], p.args_dict(args))
    received = p.parse(*p.encode(sent)[:2])
    assert isinstance(received, p.CommandRequest)
    assert p.command_args(received) == args


@FAST
@given(
    command=st.sampled_from(p.CommandName),
    args=st.dictionaries(
        st.sampled_from(
            ["session_id", "target_soc", "reservation_id", "enabled", "expires_at", "x"]
        ),
        json_values,
    ),
)
def test_command_args_only_raises_protocol_error(command: str, args: dict[str, Any]) -> None:
    try:
        typed = p.command_args(request(command, args))
    except p.ProtocolError:
        return
    assert typed is None or p.command_args(request(command, p.args_dict(typed))) == typed


@pytest.mark.parametrize(
    ("command", "args", "expected"),
    [
        ("start", {"session_id": "S-1"}, p.StartArgs(session_id="S-1")),
        (
            "start",
            {"session_id": "S-1", "target_soc": 80, "reservation_id": "R-1", "x": 1},
            p.StartArgs(session_id="S-1", target_soc=80.0, reservation_id="R-1"),
        ),
        ("stop", {}, p.StopArgs()),
        ("stop", {"session_id": "S-1"}, p.StopArgs(session_id="S-1")),
        ("info", {"anything": True}, None),
        ("maintenance", {"enabled": True}, p.MaintenanceArgs(enabled=True)),
        ("maintenance", {"enabled": False}, p.MaintenanceArgs(enabled=False)),
        ("reserve", {"reservation_id": "R-1"}, p.ReserveArgs(reservation_id="R-1")),
        (
            "reserve",
            {"reservation_id": "R-1", "expires_at": 1_700_000_000_000},
            p.ReserveArgs(reservation_id="R-1", expires_at=1_700_000_000_000),
        ),
        ("cancel_reservation", {}, p.CancelReservationArgs()),
        (
            "cancel_reservation",
            {"reservation_id": "R-1"},
            p.CancelReservationArgs(reservation_id="R-1"),
        ),
    ],
)
def test_valid_command_args_are_typed(command: str, args: dict[str, Any], expected: Any) -> None:
    assert p.command_args(request(command, args)) == expected


@pytest.mark.parametrize(
    ("command", "args"),
    [
        ("start", {}),
        ("start", {"session_id": ""}),
        ("start", {"session_id": "bad id"}),
        ("start", {"session_id": 7}),
        ("start", {"session_id": "S-1", "target_soc": 0}),
        ("start", {"session_id": "S-1", "target_soc": 101}),
        ("start", {"session_id": "S-1", "target_soc": True}),
        ("start", {"session_id": "S-1", "target_soc": "80"}),
        ("start", {"session_id": "S-1", "reservation_id": "a/b"}),
        ("stop", {"session_id": "#"}),
        ("maintenance", {}),
        ("maintenance", {"enabled": 1}),
        ("maintenance", {"enabled": "true"}),
        ("reserve", {}),
        ("reserve", {"reservation_id": "R-1", "expires_at": 1.5}),
        ("reserve", {"reservation_id": "R-1", "expires_at": True}),
        ("reserve", {"reservation_id": "R-1", "expires_at": "soon"}),
        ("cancel_reservation", {"reservation_id": 5}),
    ],
)
def test_invalid_command_args_are_rejected(command: str, args: dict[str, Any]) -> None:
    with pytest.raises(p.ProtocolError):
        p.command_args(request(command, args))


def test_an_unknown_command_name_is_rejected_by_parse() -> None:
    assert_rejected(COMMANDS, body_bytes({**VALID_BODIES["command"], "command": "reboot"}))


# --------------------------------------------------------------------------- the vendor document

EXAMPLE_RE = re.compile(r"<!-- example: (\S+) -->\s*```json\n(.*?)```", re.DOTALL)


def doc_examples() -> list[tuple[str, str]]:
    return EXAMPLE_RE.findall(DOC.read_text(encoding="utf-8"))


def test_the_vendor_document_has_an_example_for_every_message_kind() -> None:
    parsed = [p.parse(topic, text.encode()) for topic, text in doc_examples()]
    kinds = {type(m) for m in parsed}
    assert kinds == {
        p.StationBirth,
        p.StationOffline,
        p.StatusReport,
        p.MeterValues,
        p.CommandRequest,
        p.CommandReply,
    }
    commands = {m.command for m in parsed if isinstance(m, p.CommandRequest)}
    assert commands == set(p.CommandName)


@pytest.mark.parametrize(("topic", "text"), doc_examples())
def test_every_example_in_the_vendor_document_is_valid(topic: str, text: str) -> None:
    message = p.parse(topic, text.encode())
    assert_valid_message(topic, message)
    if isinstance(message, p.CommandRequest):
        p.command_args(message)
    if isinstance(message, p.CommandReply) and not message.accepted:
        assert message.reason in set(p.RejectReason)


def test_the_vendor_document_lists_every_status_reason_and_command() -> None:
    text = DOC.read_text(encoding="utf-8")
    for name in [*p.EvseStatus, *p.RejectReason, *p.StopReason, *p.CommandName]:
        assert f"`{name}`" in text, name
