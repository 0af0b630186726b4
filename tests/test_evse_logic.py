"""The EVSE's whole behaviour as a pure step (actors/evse_logic.py), driven message by message
on a manual clock: no threads, no timers, no waiting."""

from __future__ import annotations

import itertools
from typing import Any

import pykka
import pytest

from actors.evse_logic import (
    Alert,
    CancelTimer,
    Evse,
    Observe,
    Reject,
    Resolve,
    SendRequest,
    StartTimer,
    TimedOut,
)
from actors.messages import EvseChanged, SendCommand
from protocol import (
    CommandName,
    CommandReply,
    CorrelationId,
    EvseId,
    EvseInfo,
    EvseStatus,
    SessionId,
    StartArgs,
    StationId,
    StatusReport,
    StopArgs,
    command_for,
)
from storage.errors import CommandTimeoutError
from tests.support import evse_state

SID = StationId("lg-1")
KEY = EvseId("lg-1.1")
T0 = 1_800_000_000_000


def online_evse() -> Evse:
    ids = (CorrelationId(f"c{n}") for n in itertools.count(1))
    state = evse_state(KEY, status=EvseStatus.AVAILABLE, station_online=True)
    return Evse(state=state, new_id=lambda: next(ids))


def command(name: CommandName, args: Any = None, timeout_s: float = 10.0) -> SendCommand:
    return SendCommand(
        args=command_for(name, args), reply=pykka.ThreadingFuture(), timeout_s=timeout_s
    )


def reply(cid: str, info: EvseInfo | None = None, accepted: bool = True) -> CommandReply:
    return CommandReply(
        station_id=SID,
        id=CorrelationId(cid),
        command=CommandName.START,
        evse_id=EvseId("1"),
        accepted=accepted,
        info=info,
        ts=T0,
    )


def kinds(effects: list[Any]) -> list[str]:
    return [type(e).__name__ for e in effects]


def test_a_command_starts_its_timer_and_goes_out_with_its_expiry() -> None:
    evse = online_evse()
    effects = evse.step(command(CommandName.INFO, timeout_s=7.5), T0)
    assert effects == [StartTimer(CorrelationId("c1"), 7.5), effects[1]]
    assert isinstance(effects[1], SendRequest)
    request = effects[1].request
    assert (request.id, request.evse_id, request.ts, request.expires_at) == (
        "c1",
        "1",
        T0,
        T0 + 7_500,
    )


def test_a_reply_cancels_the_timer_measures_the_round_trip_and_answers_the_caller() -> None:
    evse = online_evse()
    start = command(CommandName.START, StartArgs(session_id=SessionId("s1")))
    evse.step(start, T0)
    info = EvseInfo(evse_id=EvseId("1"), status=EvseStatus.PREPARING, session_id=SessionId("s1"))
    effects = evse.step(reply("c1", info), T0 + 250)
    assert kinds(effects) == ["EvseChanged", "CancelTimer", "Observe", "Resolve"]
    assert effects[1] == CancelTimer(CorrelationId("c1"))
    assert effects[2] == Observe(CommandName.START, 0.25)
    resolve = effects[3]
    assert isinstance(resolve, Resolve)
    assert resolve.reply is start.reply
    assert resolve.outcome.accepted
    assert resolve.outcome.state.status == EvseStatus.PREPARING, "the state after the reply"
    assert evse.pending == {}


def test_a_command_to_an_offline_station_is_refused_with_nothing_sent() -> None:
    evse = Evse(state=evse_state(KEY))  # Offline: its station not seen
    start = command(CommandName.START, StartArgs(session_id=SessionId("s1")))
    effects = evse.step(start, T0)
    assert kinds(effects) == ["Resolve"]
    assert isinstance(effects[0], Resolve)
    assert (effects[0].outcome.accepted, effects[0].outcome.reason) == (False, "offline")
    assert evse.pending == {}


def test_a_timed_out_start_is_refused_and_its_late_session_stopped_with_an_alert() -> None:
    evse = online_evse()
    start = command(CommandName.START, StartArgs(session_id=SessionId("late")))
    evse.step(start, T0)
    effects = evse.step(TimedOut(CorrelationId("c1")), T0 + 10_000)
    assert kinds(effects) == ["CancelTimer", "Observe", "Reject"]
    assert effects[1] == Observe(CommandName.START, None)
    assert isinstance(effects[2], Reject)
    assert isinstance(effects[2].error, CommandTimeoutError)
    assert evse.step(TimedOut(CorrelationId("c1")), T0 + 10_001) == [], "fires once"

    # The station starts it anyway: the CSMS stops it (a new command) and tells an operator.
    info = EvseInfo(evse_id=EvseId("1"), status=EvseStatus.CHARGING, session_id=SessionId("late"))
    report = StatusReport(station_id=SID, info=info, seq=5, ts=T0 + 11_000, epoch=1)
    effects = evse.step(report, T0 + 11_000)
    assert kinds(effects) == ["EvseChanged", "StartTimer", "SendRequest", "Alert"]
    send = effects[2]
    assert isinstance(send, SendRequest)
    assert send.request.command == CommandName.STOP
    assert send.request.args == {"session_id": "late"}
    assert isinstance(effects[3], Alert)
    assert effects[3].kind == "late_session_stopped"
    # Once only: the next report of the same session does not stop it again.
    report2 = StatusReport(station_id=SID, info=info, seq=6, ts=T0 + 12_000, epoch=1)
    assert kinds(evse.step(report2, T0 + 12_000)) == ["EvseChanged"]


def test_a_reply_to_no_pending_command_is_ignored_and_counted() -> None:
    evse = online_evse()
    info = EvseInfo(evse_id=EvseId("1"), status=EvseStatus.CHARGING, session_id=SessionId("x"))
    assert evse.step(reply("never-sent", info), T0) == []
    assert evse.ignored == 1
    assert evse.state.status == EvseStatus.AVAILABLE


def test_failing_all_cancels_every_timer_and_rejects_every_caller() -> None:
    evse = online_evse()
    commands = [
        command(CommandName.INFO),
        command(CommandName.STOP, StopArgs(session_id=SessionId("s"))),
    ]
    for c in commands:
        evse.step(c, T0)
    error = RuntimeError("ending")
    effects = evse.fail_all(error)
    assert effects == [
        CancelTimer(CorrelationId("c1")),
        Reject(commands[0].reply, error),
        CancelTimer(CorrelationId("c2")),
        Reject(commands[1].reply, error),
    ]
    assert evse.pending == {}


@pytest.mark.parametrize("energy", [500.0, 0.0])
def test_a_register_that_goes_back_is_applied_and_raises_a_meter_reset_alert(energy: float) -> None:
    evse = online_evse()
    first = EvseInfo(evse_id=EvseId("1"), status=EvseStatus.AVAILABLE, energy_wh=1_000.0)
    evse.step(StatusReport(station_id=SID, info=first, seq=1, ts=T0, epoch=1), T0)
    after = EvseInfo(evse_id=EvseId("1"), status=EvseStatus.AVAILABLE, energy_wh=energy)
    effects = evse.step(StatusReport(station_id=SID, info=after, seq=2, ts=T0, epoch=1), T0)
    assert kinds(effects) == ["EvseChanged", "Alert"]
    assert isinstance(effects[0], EvseChanged)
    assert effects[0].state.energy_wh == energy
    assert isinstance(effects[1], Alert)
    assert effects[1].kind == "meter_reset"
