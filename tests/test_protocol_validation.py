"""Wire protocol v2: validation of each payload against its topic.

Ids that disagree with the topic, oversize payloads, version 1 payloads and topics, other
encodings, missing or out-of-range fields, NaN and infinity: each is rejected with a
:class:`protocol.ProtocolError`, and the reference bodies themselves are valid.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

import protocol as p
from tests.protocol_support import (
    COMMANDS,
    METER,
    REPLIES,
    STATE,
    STATUS,
    VALID_BODIES,
    assert_rejected,
    assert_valid_message,
    body_bytes,
)

TOPIC_OF = {
    "birth": STATE,
    "offline": STATE,
    "status": STATUS,
    "meter": METER,
    "command": COMMANDS,
    "reply": REPLIES,
}


def set_path(body: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """Copy of ``body`` with ``value`` at a dotted path (``station.evses.0.max_power_w``)."""
    copy = json.loads(json.dumps(body))
    *parents, last = path.split(".")
    node: Any = copy
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    node[last] = value
    return copy


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


def test_an_evse_minimum_power_is_at_most_its_maximum_and_defaults_to_6_a() -> None:
    path = "station.evses.0.min_power_w"
    birth = p.parse(STATE, body_bytes(VALID_BODIES["birth"]))
    assert isinstance(birth, p.StationBirth)
    assert birth.station.evses[0].min_power_w == 4140.0
    assert_rejected(STATE, body_bytes(set_path(VALID_BODIES["birth"], path, 50000.5)))
    at_max = p.parse(STATE, body_bytes(set_path(VALID_BODIES["birth"], path, 50000)))
    assert isinstance(at_max, p.StationBirth)
    assert at_max.station.evses[0].min_power_w == 50000.0
    evse = {k: v for k, v in VALID_BODIES["birth"]["station"]["evses"][0].items()}
    del evse["min_power_w"]
    old = p.parse(STATE, body_bytes(set_path(VALID_BODIES["birth"], "station.evses", [evse])))
    assert isinstance(old, p.StationBirth)
    assert old.station.evses[0].min_power_w == p.DEFAULT_MIN_POWER_W == 1380.0
    small = set_path(VALID_BODIES["birth"], "station.evses", [{**evse, "max_power_w": 1000}])
    tiny = p.parse(STATE, body_bytes(small))
    assert isinstance(tiny, p.StationBirth)
    assert tiny.station.evses[0].min_power_w == 1000.0, "the default never exceeds the maximum"
    assert p.EvseDescriptor(id=p.EvseId("1"), max_power_w=1000).min_power_w == 1000.0


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
    ("birth", "station.evses.0.min_power_w"),
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
