"""Restart with nothing lost, piece by piece: the stored state, its recorder, the rebuilt
supervisor, the transitions that reconcile it, and the two tables (on both backends)."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pykka
import pytest

from actors.evse_state import EvseState
from actors.evse_transition import SessionClosed, SessionOpened, StationWentOffline, transition
from actors.listeners import ListenerHost
from actors.messages import EvseChanged, GetEvseRef, GetState, Inbound, Publish
from actors.state_recorder import (
    LastKnownEvse,
    StateRecorder,
    last_known_fleet,
    state_from_json,
    state_to_json,
)
from actors.supervisor import SupervisorActor
from actors.system import CsmsConfig, CsmsSystem
from actors.timers import Timers
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
    StatusReport,
    StopReason,
)
from storage import EvseStateRow, StatusEvent, Storage
from tests.support import evse_state, wire_id

pytest_plugins = ("tests.storage_fixtures",)

S = EvseStatus
SID = StationId("st-001")
A = EvseId("st-001.1")  # the CSMS's id; the station calls it "1"
STATION = StationDescriptor(
    id=SID,
    name="Piazza",
    lat=44.49,
    lon=11.34,
    evses=(EvseDescriptor(id=wire_id(A), max_power_w=22e3),),
)
CHARGING = evse_state(
    A,
    status=S.CHARGING,
    soc=41.5,
    power_w=11_000.0,
    energy_wh=1_500.0,
    session_id=SessionId("s-1"),
    session_energy_wh=500.0,
    target_soc=80.0,
    seq=41,
    ts=1_000,
)


def finishing(session: str, session_energy: float, energy: float, seq: int = 50) -> StatusReport:
    info = EvseInfo(
        evse_id=wire_id(A),
        status=S.FINISHING,
        energy_wh=energy,
        session_id=SessionId(session),
        session_energy_wh=session_energy,
        stop_reason=StopReason.REMOTE,
    )
    return StatusReport(station_id=SID, info=info, seq=seq, ts=2_000)


# --------------------------------------------------------------------------- the state's JSON


def test_a_stored_state_reads_back_equal_with_every_field() -> None:
    offline, _ = transition(
        replace(CHARGING, stop_reason=StopReason.SOC_REACHED), StationWentOffline(ts=5)
    )
    assert state_from_json(state_to_json(offline)) == offline
    assert state_from_json(state_to_json(CHARGING)) == CHARGING


def test_an_unreadable_stored_row_is_skipped_not_fatal() -> None:
    good = EvseStateRow(evse_id=A, station_id=SID, state=state_to_json(CHARGING), updated_at=1)
    bad = EvseStateRow(evse_id="x", station_id=SID, state={"status": "Sideways"}, updated_at=1)
    assert [k.state for k in last_known_fleet([good, bad])] == [CHARGING]


# ------------------------------------------------------------------------ reconciling transitions


def test_a_session_that_ended_while_the_csms_was_down_closes_with_the_stations_energy() -> None:
    rebuilt, _ = transition(CHARGING, StationWentOffline(ts=CHARGING.ts))
    after, effects = transition(rebuilt, finishing("s-1", session_energy=900.0, energy=1_900.0))
    assert after.status is S.FINISHING
    closed = [e for e in effects if isinstance(e, SessionClosed)]
    assert closed == [
        SessionClosed(
            session_id=SessionId("s-1"), session_energy_wh=900.0, reason=StopReason.REMOTE
        )
    ]


def test_a_session_seen_only_at_its_end_is_opened_and_closed() -> None:
    stale = replace(CHARGING, status=S.AVAILABLE, session_id=None, session_energy_wh=0.0)
    rebuilt, _ = transition(stale, StationWentOffline(ts=stale.ts))
    _, effects = transition(rebuilt, finishing("s-2", session_energy=300.0, energy=1_800.0))
    kinds = [type(e) for e in effects if isinstance(e, SessionOpened | SessionClosed)]
    assert kinds == [SessionOpened, SessionClosed]


def test_a_session_stopped_while_preparing_is_still_not_recorded() -> None:
    preparing = replace(CHARGING, status=S.PREPARING, session_energy_wh=0.0)
    _, effects = transition(preparing, finishing("s-1", session_energy=0.0, energy=1_500.0))
    assert not [e for e in effects if isinstance(e, SessionOpened | SessionClosed)]


# --------------------------------------------------------------------------- the rebuilt supervisor


class BridgeRecorder(pykka.ThreadingActor):
    def __init__(self, published: queue.Queue[Publish]) -> None:
        super().__init__()
        self.published = published

    def on_receive(self, message: Any) -> None:
        if isinstance(message, Publish):
            self.published.put(message)


@pytest.fixture
def actors() -> Iterator[None]:
    yield
    pykka.ActorRegistry.stop_all()


def test_the_read_model_starts_offline_from_the_last_known_fleet_and_keeps_its_age() -> None:
    known = LastKnownEvse(state=CHARGING, station=STATION, updated_at_ms=1_000)
    system = CsmsSystem(CsmsConfig())  # not started: the read model is seeded before any actor
    system._restore_view([known])

    rebuilt = system.view.evse(A)
    assert rebuilt is not None
    assert rebuilt.state.status is S.OFFLINE
    assert rebuilt.state.session_open, "the session stays open while its station is unknown"
    assert rebuilt.updated_at == 1.0, "the view keeps the age of what it knows"
    station = system.view.station(SID)
    assert station is not None
    assert not station.online


def test_the_supervisor_rebuilds_offline_then_asks_the_station_after_its_birth(
    actors: None,
) -> None:
    published: queue.Queue[Publish] = queue.Queue()
    bridge = BridgeRecorder.start(published)
    known = LastKnownEvse(state=CHARGING, station=STATION, updated_at_ms=1_000)
    supervisor = SupervisorActor.start(bridge=bridge, last_known=[known])
    ref = supervisor.ask(GetEvseRef(evse_id=A), timeout=5)  # answered after on_start rebuilt it

    rebuilt = ref.ask(GetState(), timeout=5)
    assert rebuilt.status is S.OFFLINE
    assert rebuilt.session_open, "the session stays open while its station is unknown"
    assert published.empty()

    supervisor.tell(Inbound(message=StationBirth(station=STATION, ts=3_000)))
    request = published.get(timeout=5)
    assert request.topic.endswith("/commands")
    assert b'"command":"info"' in request.payload.replace(b" ", b"")


# --------------------------------------------------------------------------- the recorder


class FakeStores:
    def __init__(self) -> None:
        self.batches: list[list[EvseStateRow]] = []
        self.events: list[StatusEvent] = []
        self.wrote = threading.Event()

    def put_many(self, rows: list[EvseStateRow]) -> int:
        self.batches.append(list(rows))
        self.wrote.set()
        return len(rows)

    def add_many(self, events: list[StatusEvent]) -> int:
        self.events.extend(events)
        return len(events)


def changed(before: EvseState, after: EvseState) -> EvseChanged:
    _, effects = transition(
        before, StatusReport(station_id=SID, info=after.info(), seq=after.seq, ts=after.ts)
    )
    return EvseChanged(state=after, effects=effects)


def test_meter_progress_is_coalesced_into_one_write_and_a_status_change_is_logged(
    actors: None,
) -> None:
    stores = FakeStores()
    timers = Timers()
    try:
        recorder = StateRecorder(stores, stores, flush_every_s=0.2)
        subscriber = ListenerHost.start([recorder], timers=timers, tick_s=0.05)
        state = CHARGING
        for n in range(50):
            meter = MeterValues(
                station_id=SID,
                evse_id=wire_id(A),
                power_w=11e3,
                energy_wh=1_500.0 + n,
                seq=42 + n,
                ts=1_000 + n,
                session_id=SessionId("s-1"),
                soc=50.0,
            )
            state, effects = transition(state, meter)
            subscriber.tell(EvseChanged(state=state, effects=effects))
        assert stores.wrote.wait(5)
        subscriber.ask(EvseChanged(state=state, effects=()))  # a round trip: all 50 handled
        assert len(stores.batches) == 1, "50 meter values, one write"
        assert stores.batches[0][0].state["energy_wh"] == 1_549.0
        assert stores.events == []

        stores.wrote.clear()
        finished, effects = transition(state, finishing("s-1", 600.0, 1_600.0, seq=200))
        subscriber.tell(EvseChanged(state=finished, effects=effects))
        assert stores.wrote.wait(5)
        assert [(e.from_status, e.to_status, e.session_id) for e in stores.events] == [
            ("Charging", "Finishing", "s-1")
        ]
    finally:
        timers.stop()


# --------------------------------------------------------------------------- the tables


def test_evse_states_are_replaced_not_duplicated(store: Storage) -> None:
    row = EvseStateRow(evse_id=A, station_id=SID, state={"status": "Charging"}, updated_at=1)
    store.evse_states.put_many([row])
    store.evse_states.put_many(
        [replace(row, state={"status": "Finishing"}, station={"id": SID}, updated_at=2)]
    )
    assert store.evse_states.all() == [
        EvseStateRow(
            evse_id=A,
            station_id=SID,
            state={"status": "Finishing"},
            station={"id": SID},
            updated_at=2,
        )
    ]
    assert store.evse_states.put_many([]) == 0


def test_status_events_read_back_oldest_first_from_a_time(store: Storage) -> None:
    events = [
        StatusEvent(evse_id=A, ts=ts, from_status=f, to_status=t)
        for ts, f, t in [
            (10, None, "Available"),
            (20, "Available", "Charging"),
            (30, "Charging", "Finishing"),
        ]
    ]
    store.status_events.add_many(
        [*events, StatusEvent(evse_id="other", ts=25, from_status=None, to_status="Available")]
    )
    found = store.status_events.for_evse(A, since=20, limit=10)
    assert [(e.ts, e.to_status) for e in found] == [(20, "Charging"), (30, "Finishing")]
    assert all(e.id > 0 for e in found)
    assert len(store.status_events.for_evse(A, limit=1)) == 1
