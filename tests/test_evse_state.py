"""The pure EVSE transition function, and the real EvseActor, against a small model.

Both state machines share the rules (the model and the generated station reports);
only how an event reaches the system under test differs.
"""

from __future__ import annotations

from typing import Any

import pykka
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from actors.evse import EvseActor, EvseBatch
from actors.evse_state import (
    SESSION_STATUSES,
    TRANSITIONS,
    EvseState,
    Ignored,
    MeterReset,
    SessionClosed,
    SessionOpened,
    StationCameOnline,
    StationWentOffline,
    transition,
)
from actors.messages import GetState
from protocol import (
    EvseDescriptor,
    EvseId,
    EvseInfo,
    EvseStatus,
    MeterValues,
    SessionId,
    StationBirth,
    StationDescriptor,
    StationId,
    StationOffline,
    StatusReport,
    evse_key,
)

SID, EID = StationId("st-001"), EvseId("1")
KEY = evse_key(SID, EID)
STATION_STATUSES = [s for s in EvseStatus if s is not EvseStatus.OFFLINE]


def fresh_state() -> EvseState:
    return EvseState(evse_id=KEY, station_id=SID)


class _Model:
    """What the CSMS should believe, computed without the code under test."""

    def __init__(self) -> None:
        self.status = EvseStatus.OFFLINE
        self.before_offline: EvseStatus | None = None
        self.energy = 0.0
        self.session: SessionId | None = None
        self.epoch = -1
        self.seq = -1
        self.resets = 0


class EvseRules(RuleBasedStateMachine):
    """Generates station traffic (fresh, stale and illegal) and checks the outcome."""

    def __init__(self) -> None:
        super().__init__()
        self.model = _Model()
        self.clock = 1_000
        self.epoch = 0
        self.next_seq = 0
        self.sessions = 0

    def deliver(self, event: Any) -> EvseState:
        raise NotImplementedError

    def current(self) -> EvseState:
        raise NotImplementedError

    def _tick(self) -> tuple[int, int]:
        self.clock += 1_000
        self.next_seq += 1
        return self.next_seq, self.clock

    @rule(reboot=st.booleans(), lost_counter=st.booleans())
    def station_comes_online(self, reboot: bool, lost_counter: bool) -> None:
        """A reconnect keeps the epoch (the count goes on); a reboot starts a new epoch; a
        station that lost its storage may even start over at a lower one."""
        if reboot:
            self.epoch = 0 if lost_counter else self.epoch + 1
            self.next_seq = 0
        station = StationDescriptor(id=SID, name="S", lat=0, lon=0, evses=())
        self.deliver(StationBirth(station=station, ts=self.clock, epoch=self.epoch))
        if self.epoch != self.model.epoch:
            self.model.epoch, self.model.seq = self.epoch, -1

    @rule()
    def station_goes_offline(self) -> None:
        self.deliver(StationOffline(station_id=SID, ts=self.clock))
        if self.model.status is not EvseStatus.OFFLINE:
            self.model.before_offline = self.model.status
            self.model.status = EvseStatus.OFFLINE

    @rule(
        status=st.sampled_from(STATION_STATUSES),
        with_session=st.booleans(),
        new_session=st.booleans(),
        energy=st.floats(0, 5_000),
        stale=st.booleans(),
        meter_swapped=st.booleans(),
    )
    def station_reports_status(
        self,
        status: EvseStatus,
        with_session: bool,
        new_session: bool,
        energy: float,
        stale: bool,
        meter_swapped: bool,
    ) -> None:
        epoch = self.epoch
        if stale and self.model.seq >= 0:
            epoch, seq, ts = self.model.epoch, self.model.seq, self.clock + 5_000
        else:
            seq, ts = self._tick()
        # A station never reuses a session id once that session has closed.
        if new_session or self.model.session is None or self.model.status not in SESSION_STATUSES:
            self.sessions += 1
        session = SessionId(f"s{self.sessions}") if with_session else None
        total = energy if meter_swapped else self.model.energy + energy
        info = EvseInfo(evse_id=EID, status=status, energy_wh=total, session_id=session)
        self.deliver(StatusReport(station_id=SID, info=info, seq=seq, ts=ts, epoch=epoch))
        # Fresh and well-formed is enough: an unexpected change is applied (and flagged).
        accepted = (
            epoch > self.model.epoch or (epoch == self.model.epoch and seq > self.model.seq)
        ) and (status not in SESSION_STATUSES or session is not None)
        if accepted:  # a register that went back (a new meter) is applied, never refused
            m = self.model
            m.status, m.energy, m.session, m.epoch, m.seq = status, total, session, epoch, seq
            m.before_offline = None

    @precondition(lambda self: self.model.status in SESSION_STATUSES)
    @rule(energy=st.floats(0, 2_000), backwards=st.booleans())
    def station_sends_meter_values(self, energy: float, backwards: bool) -> None:
        seq, ts = self._tick()
        total = max(self.model.energy - 1, 0) if backwards else self.model.energy + energy
        meter = MeterValues(
            station_id=SID,
            evse_id=EID,
            session_id=self.model.session,
            power_w=7_000,
            energy_wh=total,
            soc=50,
            seq=seq,
            ts=ts,
            epoch=self.epoch,
        )
        self.deliver(meter)
        if (self.epoch, seq) > (self.model.epoch, self.model.seq):
            self.model.energy, self.model.epoch, self.model.seq = total, self.epoch, seq

    @invariant()
    def status_is_what_the_model_says(self) -> None:
        assert self.current().status == self.model.status

    @invariant()
    def status_is_always_legal(self) -> None:
        assert self.current().status in TRANSITIONS

    @invariant()
    def session_is_open_iff_charging_or_suspended(self) -> None:
        s = self.current()
        effective = s.status_before_offline if s.status is EvseStatus.OFFLINE else s.status
        assert s.session_open == (effective in SESSION_STATUSES)
        if s.session_open:
            assert s.session_id is not None

    @invariant()
    def energy_register_is_what_the_model_says(self) -> None:
        s = self.current()
        assert s.energy_wh == pytest.approx(self.model.energy)


class PureTransitionMachine(EvseRules):
    def __init__(self) -> None:
        super().__init__()
        self.state = fresh_state()
        self.opened: set[SessionId] = set()

    def deliver(self, event: Any) -> EvseState:
        if isinstance(event, StationBirth):
            event = StationCameOnline(ts=event.ts, epoch=event.epoch)
        elif isinstance(event, StationOffline):
            event = StationWentOffline(ts=event.ts)
        before = self.state
        self.state, effects = transition(self.state, event)
        for effect in effects:
            if isinstance(effect, Ignored):
                assert self.state == before, "an ignored report must leave the state unchanged"
            if isinstance(effect, SessionOpened):
                assert effect.session_id not in self.opened, "a session opens once"
                self.opened.add(effect.session_id)
            if isinstance(effect, SessionClosed):
                assert effect.session_id in self.opened, "only an open session closes"
        return self.state

    def current(self) -> EvseState:
        return self.state


class EvseActorMachine(EvseRules):
    """The same traffic through a real EVSE actor (its mailbox and thread, the batches the
    supervisor sends, the ref the gateway uses)."""

    def __init__(self) -> None:
        super().__init__()
        self.ref = EvseActor.start(fresh_state(), bridge=None, supervisor=None)

    def deliver(self, event: Any) -> EvseState:
        self.ref.tell(EvseBatch(items=[event]))
        return self.current()

    def current(self) -> EvseState:
        state: EvseState = self.ref.ask(GetState(), timeout=5)
        return state

    def teardown(self) -> None:
        self.ref.stop(timeout=5)


TestPureTransition = PureTransitionMachine.TestCase
TestPureTransition.settings = settings(max_examples=300, stateful_step_count=40, deadline=None)

TestEvseActor = EvseActorMachine.TestCase
TestEvseActor.settings = settings(
    max_examples=60,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def test_transition_table_names_every_status() -> None:
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
    assert (state.connector, state.max_power_w) == ("CCS2", 150_000.0)
    assert effects


@pytest.fixture(autouse=True)
def _stop_actors() -> Any:
    yield
    pykka.ActorRegistry.stop_all()


def test_a_report_of_far_more_power_than_the_evse_has_is_refused() -> None:
    state, _ = _report(fresh_state(), EvseStatus.AVAILABLE, seq=1)  # 22 kW by default
    after, effects = _report(
        state, EvseStatus.CHARGING, seq=2, session_id=SessionId("s"), power_w=10_000_000.0
    )
    assert after == state
    assert isinstance(effects[0], Ignored)
    assert "implausible" in effects[0].why
