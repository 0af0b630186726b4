"""An EVSE actor killed by an exception is restarted from its last known state; its
neighbours never notice; past the restart intensity the EVSE is marked Faulted."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pykka
import pytest

from actors.evse import EvseActor
from actors.fleet_view import FleetView, FleetViewWriter
from actors.listeners import ListenerHost
from actors.messages import GetEvseRef, GetState, Inbound
from actors.supervisor import SupervisorActor
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
)
from storage.errors import ActorUnavailableError
from tests.support import POISON_SEQ, FleetWatcher, poison_evse_logic, wire_id

SID = StationId("st-001")
A, B = EvseId("st-001.1"), EvseId("st-001.2")  # the CSMS's ids; the station says 1 and 2


@pytest.fixture
def poisonable(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make an EVSE actor raise on a report with ``seq == POISON_SEQ`` (a bug, simulated)."""
    poison_evse_logic(monkeypatch)


@pytest.fixture
def fleet(poisonable: None) -> Iterator[tuple[pykka.ActorRef[Any], FleetWatcher, FleetView]]:
    watcher = FleetWatcher()
    view = FleetView()
    subscriber = ListenerHost.start([FleetViewWriter(view), watcher])
    supervisor = SupervisorActor.start(
        bridge=None, subscribers=[subscriber], max_restarts=2, restart_window_s=60
    )
    station = StationDescriptor(
        id=SID,
        name="Piazza",
        lat=44.49,
        lon=11.34,
        evses=(
            EvseDescriptor(id=wire_id(A), max_power_w=22_000),
            EvseDescriptor(id=wire_id(B), max_power_w=50_000),
        ),
    )
    supervisor.tell(Inbound(message=StationBirth(station=station, ts=1)))
    try:
        yield supervisor, watcher, view
    finally:
        pykka.ActorRegistry.stop_all()


def report(
    evse: EvseId, status: EvseStatus, seq: int, energy: float = 0.0, session: str | None = None
) -> Inbound:
    info = EvseInfo(
        evse_id=wire_id(evse),
        status=status,
        energy_wh=energy,
        session_id=SessionId(session) if session else None,
        soc=40.0,
    )
    return Inbound(message=StatusReport(station_id=SID, info=info, seq=seq, ts=seq))


def test_crashed_evse_actor_restarts_from_its_last_state_and_neighbours_never_notice(
    fleet: tuple[pykka.ActorRef[Any], FleetWatcher, FleetView],
) -> None:
    supervisor, watcher, _view = fleet
    supervisor.tell(report(A, EvseStatus.AVAILABLE, 1))
    supervisor.tell(report(B, EvseStatus.AVAILABLE, 2))
    supervisor.tell(report(A, EvseStatus.CHARGING, 3, energy=1_200, session="s-1"))
    watcher.wait_for(
        lambda: watcher.status_is(A, "Charging")() and watcher.status_is(B, "Available")(),
        "A charging, B available",
    )
    a_before = supervisor.ask(GetEvseRef(evse_id=A), timeout=5)
    b_before = supervisor.ask(GetEvseRef(evse_id=B), timeout=5)
    b_history = len(watcher.history[B])

    supervisor.tell(report(A, EvseStatus.CHARGING, POISON_SEQ, energy=1_300, session="s-1"))
    watcher.wait_for(
        lambda: any(a.kind == "actor_restarted" for a in watcher.alerts),
        "the supervisor to restart A",
    )

    a_after = supervisor.ask(GetEvseRef(evse_id=A), timeout=5)
    assert a_after.actor_urn != a_before.actor_urn
    assert not a_before.is_alive()
    state = a_after.ask(GetState(), timeout=5)
    assert state.status == EvseStatus.CHARGING
    assert state.session_id == "s-1"
    assert state.energy_wh == 1_200
    assert state.seq == 3, "restarted from the last state it accepted"

    # The restarted actor carries on with the station's next report.
    supervisor.tell(
        Inbound(
            message=MeterValues(
                station_id=SID,
                evse_id=wire_id(A),
                session_id=SessionId("s-1"),
                power_w=22_000,
                energy_wh=1_500,
                soc=45,
                seq=4,
                ts=4,
            )
        )
    )
    watcher.wait_for(lambda: watcher.latest[A].energy_wh == 1_500, "A's energy to move on")

    # B: same actor, nothing happened to it, still answering.
    assert supervisor.ask(GetEvseRef(evse_id=B), timeout=5) is b_before
    assert b_before.is_alive()
    assert len(watcher.history[B]) == b_history
    supervisor.tell(report(B, EvseStatus.PREPARING, 5))
    watcher.wait_for(watcher.status_is(B, "Preparing"), "B to follow its station")


def test_evse_crashing_past_the_restart_intensity_is_marked_faulted_and_operator_told(
    fleet: tuple[pykka.ActorRef[Any], FleetWatcher, FleetView],
) -> None:
    supervisor, watcher, view = fleet
    supervisor.tell(report(A, EvseStatus.AVAILABLE, 1))
    supervisor.tell(report(B, EvseStatus.AVAILABLE, 2))
    watcher.wait_for(lambda: watcher.status_is(B, "Available")(), "B available")
    for n in range(3):  # max_restarts=2: the third crash within the window is one too many
        supervisor.tell(report(A, EvseStatus.AVAILABLE, POISON_SEQ))
        watcher.wait_for(
            lambda n=n: len([a for a in watcher.alerts if a.evse_id == A]) > n,
            f"crash {n + 1} handled",
        )
    kinds = [a.kind for a in watcher.alerts if a.evse_id == A]
    assert kinds == ["actor_restarted", "actor_restarted", "evse_faulted"]
    watcher.wait_for(watcher.status_is(A, "Faulted"), "A marked Faulted")
    with pytest.raises(ActorUnavailableError):
        supervisor.ask(GetEvseRef(evse_id=A), timeout=5)
    evse_view = view.evse(A)
    assert evse_view is not None
    assert evse_view.state.status == EvseStatus.FAULTED
    assert evse_view.alert is not None
    assert "Faulted" in evse_view.alert
    # B is untouched and still alive.
    assert supervisor.ask(GetEvseRef(evse_id=B), timeout=5).is_alive()
    assert watcher.state(B).status == EvseStatus.AVAILABLE


def test_ten_stations_of_two_evses_run_twenty_evse_actors_and_one_crash_touches_one(
    poisonable: None,
) -> None:
    watcher = FleetWatcher()
    subscriber = ListenerHost.start([watcher])
    supervisor = SupervisorActor.start(bridge=None, subscribers=[subscriber])
    try:
        for n in range(10):
            sid = StationId(f"ten-{n:02d}")
            evses = tuple(EvseDescriptor(id=EvseId(e), max_power_w=22_000) for e in ("1", "2"))
            station = StationDescriptor(id=sid, name=sid, lat=44.0, lon=11.0, evses=evses)
            supervisor.tell(Inbound(message=StationBirth(station=station, ts=1)))
        keys = [EvseId(f"ten-{n:02d}.{e}") for n in range(10) for e in ("1", "2")]
        refs = {key: supervisor.ask(GetEvseRef(evse_id=key), timeout=5) for key in keys}

        live = [ref for ref in pykka.ActorRegistry.get_by_class(EvseActor) if ref.is_alive()]
        assert len(live) == 20
        assert set(live) == set(refs.values())

        victim = keys[7]
        info = EvseInfo(evse_id=wire_id(victim), status=EvseStatus.AVAILABLE)
        poison = StatusReport(station_id=StationId("ten-03"), info=info, seq=POISON_SEQ, ts=1)
        supervisor.tell(Inbound(message=poison))
        watcher.wait_for(
            lambda: any(a.kind == "actor_restarted" for a in watcher.alerts), "the restart"
        )
        assert refs[victim].actor_stopped.wait(5)
        restarted = supervisor.ask(GetEvseRef(evse_id=victim), timeout=5)
        assert restarted.is_alive()
        assert restarted is not refs[victim]
        for key in keys:
            if key != victim:
                assert supervisor.ask(GetEvseRef(evse_id=key), timeout=5) is refs[key]
                assert refs[key].is_alive()
        live = [ref for ref in pykka.ActorRegistry.get_by_class(EvseActor) if ref.is_alive()]
        assert len(live) == 20
    finally:
        pykka.ActorRegistry.stop_all()
