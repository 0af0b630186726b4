"""Wire protocol v2 (the ``protocol`` package): round trips, the topic tree, ids and EVSE keys.

Every message survives encode then parse, the topics and the broker ACL follow the documented
tree, and ids and EVSE keys are checked and split the same way everywhere.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import protocol as p
from tests.protocol_support import (
    FAST,
    FUZZ,
    STATE,
    VALID_BODIES,
    assert_rejected,
    body_bytes,
    ids,
    messages,
    station_ids,
)

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
