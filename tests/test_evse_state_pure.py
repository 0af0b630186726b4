"""The EVSE's pure step (``Evse.step`` and the transition table), against a small model of
its own (tests/evse_state_support.py), and case by case: stale reports, sessions across the
station going offline, meter resets, births and implausible power.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import settings

from actors.evse_logic import Evse, Reject, Resolve, SendRequest, TimedOut
from actors.evse_state import EvseState
from actors.evse_transition import (
    Ignored,
    MeterReset,
    SessionClosed,
    SessionOpened,
    StationCameOnline,
    StationWentOffline,
    transition,
)
from actors.messages import EvseChanged, SendCommand
from protocol import (
    CommandRequest,
    CorrelationId,
    EvseDescriptor,
    EvseInfo,
    EvseStatus,
    MeterValues,
    SessionId,
    StatusReport,
)
from tests import evse_state_support
from tests.evse_state_support import EID, SID, EvseRules, fresh_state

_stop_actors = evse_state_support._stop_actors


class PureStepMachine(EvseRules):
    """The traffic through ``Evse.step`` alone: its effects are carried out here as the actor
    would (futures completed, requests recorded), and checked on the way."""

    def __init__(self) -> None:
        super().__init__()
        ids = (CorrelationId(f"c{n}") for n in range(1, 10**9))
        self.evse = Evse(state=fresh_state(), new_id=lambda: next(ids))
        self.opened: set[SessionId] = set()
        self.sent: list[CommandRequest] = []

    def deliver(self, event: Any) -> EvseState:
        self._carry_out(self.evse.step(event, self.clock))
        return self.evse.state

    def send(self, command: SendCommand) -> None:
        self._carry_out(self.evse.step(command, self.clock))

    def time_out(self, cid: str) -> None:
        self._carry_out(self.evse.step(TimedOut(CorrelationId(cid)), self.clock))

    def requests(self) -> list[CommandRequest]:
        return list(self.sent)

    def current(self) -> EvseState:
        return self.evse.state

    def _carry_out(self, effects: list[Any]) -> None:
        for effect in effects:
            match effect:
                case SendRequest(request=request):
                    self.sent.append(request)
                case Resolve(reply=reply, outcome=outcome):
                    reply.set(outcome)
                case Reject(reply=reply, error=error):
                    reply.set_exception((type(error), error, None))
                case EvseChanged(effects=changes):
                    for change in changes:
                        if isinstance(change, SessionOpened):
                            assert change.session_id not in self.opened, "a session opens once"
                            self.opened.add(change.session_id)
                        if isinstance(change, SessionClosed):
                            assert change.session_id in self.opened, "only an open session closes"


TestPureStep = PureStepMachine.TestCase
TestPureStep.settings = settings(max_examples=300, stateful_step_count=40, deadline=None)


def test_transition_table_names_every_status() -> None:
    from actors.evse_transition import TRANSITIONS  # the table itself, outside the model

    assert set(TRANSITIONS) == set(EvseStatus)
    assert all(EvseStatus.OFFLINE not in targets for targets in TRANSITIONS.values())


def test_a_stale_report_is_ignored_and_changes_nothing() -> None:
    state = fresh_state()
    report = StatusReport(
        station_id=SID, info=EvseInfo(evse_id=EID, status=EvseStatus.AVAILABLE), seq=5, ts=100
    )
    state, _ = transition(state, report)
    older = StatusReport(
        station_id=SID, info=EvseInfo(evse_id=EID, status=EvseStatus.FAULTED), seq=4, ts=200
    )
    after, effects = transition(state, older)
    assert after == state
    assert isinstance(effects[0], Ignored)
    assert "stale" in effects[0].why


def test_charging_without_a_session_id_is_refused() -> None:
    state, _ = transition(
        fresh_state(),
        StatusReport(
            station_id=SID, info=EvseInfo(evse_id=EID, status=EvseStatus.AVAILABLE), seq=1, ts=1
        ),
    )
    after, effects = transition(
        state,
        StatusReport(
            station_id=SID, info=EvseInfo(evse_id=EID, status=EvseStatus.CHARGING), seq=2, ts=2
        ),
    )
    assert after.status is EvseStatus.AVAILABLE
    assert isinstance(effects[0], Ignored)


def test_a_session_survives_the_station_going_offline() -> None:
    state = fresh_state()
    for seq, status in enumerate([EvseStatus.AVAILABLE, EvseStatus.CHARGING], start=1):
        info = EvseInfo(
            evse_id=EID,
            status=status,
            session_id=SessionId("s1") if status is EvseStatus.CHARGING else None,
        )
        state, _ = transition(state, StatusReport(station_id=SID, info=info, seq=seq, ts=seq))
    state, effects = transition(state, StationWentOffline(ts=10))
    assert state.status is EvseStatus.OFFLINE
    assert state.session_open
    assert not any(isinstance(e, SessionClosed) for e in effects)


def _report(state: EvseState, status: EvseStatus, *, seq: int, epoch: int = 1, **info: Any) -> Any:
    report = StatusReport(
        station_id=SID,
        info=EvseInfo(evse_id=EID, status=status, **info),
        seq=seq,
        ts=seq,
        epoch=epoch,
    )
    return transition(state, report)


def test_a_register_that_goes_back_is_a_meter_reset_not_a_refusal() -> None:
    state, _ = _report(fresh_state(), EvseStatus.AVAILABLE, seq=1, energy_wh=50_000.0)
    after, effects = _report(state, EvseStatus.AVAILABLE, seq=2, energy_wh=12.0)
    assert after.energy_wh == 12.0
    assert not any(isinstance(e, Ignored) for e in effects)
    assert MeterReset(before_wh=50_000.0, after_wh=12.0) in effects


def test_a_meter_value_after_a_reset_adds_nothing_and_becomes_the_new_baseline() -> None:
    session = SessionId("s1")
    state, _ = _report(
        fresh_state(), EvseStatus.CHARGING, seq=1, energy_wh=1_000.0, session_id=session
    )

    def meter(seq: int, energy: float) -> tuple[EvseState, Any]:
        values = MeterValues(
            station_id=SID,
            evse_id=EID,
            session_id=session,
            power_w=7_000.0,
            energy_wh=energy,
            soc=None,
            seq=seq,
            ts=seq,
            epoch=1,
        )
        return transition(state, values)

    state, _ = meter(2, 1_500.0)
    state, effects = meter(3, 100.0)  # the meter was swapped
    assert any(isinstance(e, MeterReset) for e in effects)
    state, _ = meter(4, 160.0)
    assert state.session_energy_wh == pytest.approx(560.0)
    assert state.energy_wh == 160.0


def test_a_birth_of_the_same_epoch_keeps_the_count_so_kept_messages_still_apply() -> None:
    state, _ = _report(fresh_state(), EvseStatus.AVAILABLE, seq=300)
    state, _ = transition(state, StationWentOffline(ts=1))
    state, _ = transition(state, StationCameOnline(ts=2, epoch=1))
    assert (state.epoch, state.seq) == (1, 300)
    state, effects = _report(state, EvseStatus.FAULTED, seq=301)  # kept while offline
    assert state.status is EvseStatus.FAULTED
    state, effects = _report(state, EvseStatus.AVAILABLE, seq=299)  # a duplicate from before
    assert isinstance(effects[0], Ignored)


def test_a_birth_of_a_new_epoch_starts_the_count_again_even_a_lower_one() -> None:
    state, _ = _report(fresh_state(), EvseStatus.AVAILABLE, seq=2**63 - 1, epoch=5)
    state, _ = transition(state, StationCameOnline(ts=2, epoch=1))  # the station lost its storage
    state, _ = _report(state, EvseStatus.FAULTED, seq=1, epoch=1)
    assert state.status is EvseStatus.FAULTED


def test_a_birth_updates_the_evse_description() -> None:
    described = EvseDescriptor(id=EID, connector="CCS2", max_power_w=150_000.0)
    state, effects = transition(
        fresh_state(), StationCameOnline(ts=1, epoch=0, descriptor=described)
    )
    assert state.descriptor == described
    assert effects


def test_a_report_of_far_more_power_than_the_evse_has_is_refused() -> None:
    state, _ = _report(fresh_state(), EvseStatus.AVAILABLE, seq=1)  # 22 kW by default
    after, effects = _report(
        state, EvseStatus.CHARGING, seq=2, session_id=SessionId("s"), power_w=10_000_000.0
    )
    assert after == state
    assert isinstance(effects[0], Ignored)
    assert "implausible" in effects[0].why
