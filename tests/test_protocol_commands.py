"""Wire protocol v2: typed command arguments, and ``docs/protocol.md``.

Command arguments survive the wire typed and are rejected when invalid, and the vendor document
shows only examples the code accepts, for every message kind, status reason and command.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import protocol as p
from protocol import (
    CommandName,
    InfoArgs,
    SessionId,
    SetLimitArgs,
    StartArgs,
    StopArgs,
    args_dict,
    command_for,
)
from tests.protocol_support import (
    COMMANDS,
    FAST,
    VALID_BODIES,
    assert_rejected,
    assert_valid_message,
    body_bytes,
    ids,
    json_values,
    numbers,
    timestamps,
)

DOC = Path(__file__).resolve().parent.parent / "docs" / "protocol.md"

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
    st.builds(
        p.SetLimitArgs,
        limit_w=numbers(0, p.MAX_LIMIT_W),
        expires_at=timestamps,
        fallback_w=st.none() | numbers(0, p.MAX_LIMIT_W),
    ),
)
COMMAND_OF_ARGS = {
    p.StartArgs: p.CommandName.START,
    p.StopArgs: p.CommandName.STOP,
    p.MaintenanceArgs: p.CommandName.MAINTENANCE,
    p.ReserveArgs: p.CommandName.RESERVE,
    p.CancelReservationArgs: p.CommandName.CANCEL_RESERVATION,
    p.SetLimitArgs: p.CommandName.SET_LIMIT,
}


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
            [
                "session_id",
                "target_soc",
                "reservation_id",
                "enabled",
                "expires_at",
                "limit_w",
                "fallback_w",
                "x",
            ]
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
        (
            "set_limit",
            {"limit_w": 7400, "expires_at": 1_700_000_000_000},
            p.SetLimitArgs(limit_w=7400.0, expires_at=1_700_000_000_000),
        ),
        (
            "set_limit",
            {"limit_w": 0, "expires_at": 0, "fallback_w": 1_000_000, "x": 1},
            p.SetLimitArgs(limit_w=0.0, expires_at=0, fallback_w=1_000_000.0),
        ),
        (
            "set_limit",
            {"limit_w": 4140.5, "expires_at": 1, "fallback_w": None},
            p.SetLimitArgs(limit_w=4140.5, expires_at=1),
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
        ("set_limit", {}),
        ("set_limit", {"limit_w": 7400}),  # expires_at is required
        ("set_limit", {"expires_at": 1_700_000_000_000}),
        ("set_limit", {"limit_w": -1, "expires_at": 1}),
        ("set_limit", {"limit_w": 1_000_000.5, "expires_at": 1}),
        ("set_limit", {"limit_w": "7400", "expires_at": 1}),
        ("set_limit", {"limit_w": True, "expires_at": 1}),
        ("set_limit", {"limit_w": 7400, "expires_at": 1.5}),
        ("set_limit", {"limit_w": 7400, "expires_at": -1}),
        ("set_limit", {"limit_w": 7400, "expires_at": True}),
        ("set_limit", {"limit_w": 7400, "expires_at": "later"}),
        ("set_limit", {"limit_w": 7400, "expires_at": 1, "fallback_w": -0.1}),
        ("set_limit", {"limit_w": 7400, "expires_at": 1, "fallback_w": 2e6}),
        ("set_limit", {"limit_w": 7400, "expires_at": 1, "fallback_w": False}),
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


def test_each_command_is_one_class_and_a_name_cannot_disagree_with_its_arguments() -> None:
    assert [cls.command for cls in (StartArgs, StopArgs, InfoArgs)] == [
        CommandName.START,
        CommandName.STOP,
        CommandName.INFO,
    ]
    stop = StopArgs(session_id=SessionId("s-1"))
    assert command_for(CommandName.STOP, stop) is stop
    assert command_for(CommandName.INFO) == InfoArgs()
    assert command_for(CommandName.STOP) == StopArgs()
    with pytest.raises(TypeError, match="StopArgs are not the arguments of start"):
        command_for(CommandName.START, stop)
    with pytest.raises(TypeError, match="needs its arguments"):
        command_for(CommandName.START)
    assert args_dict(InfoArgs()) == {}
    assert args_dict(stop) == {"session_id": "s-1"}, "the class's command is not an argument"
    limit = SetLimitArgs(limit_w=7400.0, expires_at=1_700_000_000_000)
    assert command_for(CommandName.SET_LIMIT, limit) is limit
    assert args_dict(limit) == {"limit_w": 7400.0, "expires_at": 1_700_000_000_000}
    with pytest.raises(TypeError, match="needs its arguments"):
        command_for(CommandName.SET_LIMIT)
