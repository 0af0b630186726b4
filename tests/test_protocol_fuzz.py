"""Wire protocol v2: fuzzing the parser.

The parser faces bytes from any station on the broker, so these tests prove that
:func:`protocol.parse` only ever raises :class:`protocol.ProtocolError`, whatever the topic,
bytes, JSON value or mutation of a valid message, and that unknown fields are ignored.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import protocol as p
from tests.protocol_support import (
    COMMANDS,
    FAST,
    FUZZ,
    METER,
    REPLIES,
    STATE,
    STATUS,
    assert_valid_message,
    body_bytes,
    json_values,
    messages,
)

ALL_TOPICS = [STATE, STATUS, METER, COMMANDS, REPLIES]


def parse_or_reject(topic: str, payload: bytes) -> None:
    try:
        message = p.parse(topic, payload)
    except p.ProtocolError:
        return
    assert_valid_message(topic, message)


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
