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

from actors.evse import EvseHost, EvseRef, HostEvse, ShardBatch
from actors.evse_state import (
    SESSION_STATUSES,
    TRANSITIONS,
    EvseState,
    Ignored,
    SessionClosed,
    SessionOpened,
    StationCameOnline,
    StationWentOffline,
    is_legal,
    transition,
)
from actors.messages import GetState
from actors.protocol import (
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
)

SID, EID = StationId("st-001"), EvseId("st-001-1")
STATION_STATUSES = [s for s in EvseStatus if s is not EvseStatus.OFFLINE]


def fresh_state() -> EvseState:
    return EvseState(evse_id=EID, station_id=SID)


class _Model:
    """What the CSMS should believe, computed without the code under test."""

    def __init__(self) -> None:
        self.status = EvseStatus.OFFLINE
        self.before_offline: EvseStatus | None = None
        self.energy = 0.0
        self.session: SessionId | None = None
        self.seq = -1
        self.ts = -1


class EvseRules(RuleBasedStateMachine):
    """Generates station traffic (fresh, stale and illegal) and checks the outcome."""

    def __init__(self) -> None:
        super().__init__()
        self.model = _Model()
        self.clock = 1_000
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

    @rule()
    def station_comes_online(self) -> None:
        station = StationDescriptor(id=SID, name="S", lat=0, lon=0, evses=())
        self.deliver(StationBirth(station=station, ts=self.clock))
        self.model.seq = self.model.ts = -1
        self.next_seq = 0  # a station that lost its counter starts over after a birth

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
    )
    def station_reports_status(
        self, status: EvseStatus, with_session: bool, new_session: bool, energy: float, stale: bool
    ) -> None:
        if stale and self.model.seq >= 0:
            seq, ts = self.model.seq, self.clock - 5_000
        else:
            seq, ts = self._tick()
        # A station never reuses a session id once that session has closed.
        if new_session or self.model.session is None or self.model.status not in SESSION_STATUSES:
            self.sessions += 1
        session = SessionId(f"s{self.sessions}") if with_session else None
        total = self.model.energy + energy
        info = EvseInfo(evse_id=EID, status=status, energy_wh=total, session_id=session)
        self.deliver(StatusReport(station_id=SID, info=info, seq=seq, ts=ts))
        accepted = (
            seq > self.model.seq
            and ts >= self.model.ts
            and is_legal(self.model.status, status)
            and (status not in SESSION_STATUSES or session is not None)
        )
        if accepted:
            m = self.model
            m.status, m.energy, m.session, m.seq, m.ts = status, total, session, seq, ts
            m.before_offline = None

    @precondition(lambda self: self.model.status in SESSION_STATUSES)
    @rule(energy=st.floats(0, 2_000), backwards=st.booleans())
    def station_sends_meter_values(self, energy: float, backwards: bool) -> None:
        seq, ts = self._tick()
        total = self.model.energy - 1 if backwards else self.model.energy + energy
        meter = MeterValues(
            station_id=SID,
            evse_id=EID,
            session_id=self.model.session,
            power_w=7_000,
            energy_wh=max(total, 0),
            soc=50,
            seq=seq,
            ts=ts,
        )
        self.deliver(meter)
        if not backwards or self.model.energy == 0:
            self.model.energy, self.model.seq, self.model.ts = max(total, 0), seq, ts

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
    def energy_register_never_decreases(self) -> None:
        s = self.current()
        assert s.energy_wh == pytest.approx(self.model.energy)


class PureTransitionMachine(EvseRules):
    def __init__(self) -> None:
        super().__init__()
        self.state = fresh_state()
        self.opened: set[SessionId] = set()

    def deliver(self, event: Any) -> EvseState:
        if isinstance(event, StationBirth):
            event = StationCameOnline(ts=event.ts)
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
    """The same traffic through a real EVSE actor on its host (the host's mailbox and
    thread, the batches the supervisor sends, the handle the gateway uses)."""

    def __init__(self) -> None:
        super().__init__()
        self.host = EvseHost.start(bridge=None, supervisor=None)
        state = fresh_state()
        self.ref = EvseRef(state.evse_id, self.host)
        self.host.tell(HostEvse(self.ref, state))

    def deliver(self, event: Any) -> EvseState:
        self.host.tell(ShardBatch(items=[(self.ref.evse_id, event)]))
        return self.current()

    def current(self) -> EvseState:
        state: EvseState = self.ref.ask(GetState(), timeout=5)
        return state

    def teardown(self) -> None:
        self.host.stop(timeout=5)


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


@pytest.fixture(autouse=True)
def _stop_actors() -> Any:
    yield
    pykka.ActorRegistry.stop_all()
