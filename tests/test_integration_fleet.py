"""The CSMS and a simulated fleet over a real broker (Mosquitto, and the embedded amqtt).

The CSMS runs in this process (its actors, its bridge); the stations run in
their own processes, as ``smartcharge fleet`` runs them. Every wait is on EVSE
events with a deadline.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pykka
import pytest

from actors.system import CsmsConfig, CsmsSystem
from protocol import CommandName, EvseStatus, MaintenanceArgs, StartArgs, StopArgs
from tests.support import FleetProcess, FleetWatcher

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

STATIONS, EVSES = 20, 2
KEEPALIVE = 2


@pytest.fixture
def csms(broker_url: str) -> Iterator[tuple[CsmsSystem, FleetWatcher]]:
    watcher = FleetWatcher()
    system = CsmsSystem(CsmsConfig(mqtt_url=broker_url, listeners=(watcher,), command_timeout_s=10))
    system.start(wait_connected_s=10)
    assert system.mqtt_connected.is_set()
    try:
        yield system, watcher
    finally:
        system.stop()
        pykka.ActorRegistry.stop_all()


def _all_available(watcher: FleetWatcher, ids: list[str]) -> bool:
    return all(
        watcher.latest.get(e) is not None and watcher.latest[e].status == EvseStatus.AVAILABLE
        for e in ids
    )


def test_fleet_announces_itself_and_is_driven_by_commands(
    csms: tuple[CsmsSystem, FleetWatcher], broker_url: str, tmp_path: Path
) -> None:
    system, watcher = csms
    ids = [f"st-{s:03d}.{e}" for s in range(1, STATIONS + 1) for e in range(1, EVSES + 1)]
    with FleetProcess(
        broker_url,
        tmp_path / "fleet",
        stations=STATIONS,
        evses=EVSES,
        speed=60,
        keepalive=KEEPALIVE,
    ):
        watcher.wait_for(lambda: _all_available(watcher, ids), "40 EVSEs Available", 60)
        assert len(system.view.stations()) == STATIONS
        assert all(s.online for s in system.view.stations())

        # start on 5 EVSEs -> Charging, energy and SoC rising
        charging = ids[:5]
        for n, evse_id in enumerate(charging):
            outcome = system.command(
                evse_id, CommandName.START, StartArgs(session_id=f"sess-{n}", target_soc=100)
            )
            assert outcome.accepted, outcome.reason
        for evse_id in charging:
            watcher.wait_for(watcher.status_is(evse_id, "Charging"), f"{evse_id} Charging")
            first = watcher.state(evse_id)
            watcher.wait_for(
                lambda e=evse_id, f=first: (
                    watcher.latest[e].energy_wh > f.energy_wh
                    and (watcher.latest[e].soc or 0) > (f.soc or 0)
                ),
                f"{evse_id} energy and SoC rising",
            )
            assert watcher.state(evse_id).session_id is not None
            assert watcher.state(evse_id).session_open

        # stop -> Finishing -> Available
        stopped = charging[0]
        outcome = system.command(stopped, CommandName.STOP, StopArgs(session_id="sess-0"))
        assert outcome.accepted, outcome.reason
        watcher.wait_for(watcher.status_is(stopped, "Available"), f"{stopped} Available again")
        seen = [s.status for s in watcher.history[stopped]]
        assert EvseStatus.FINISHING in seen[seen.index(EvseStatus.CHARGING) :]

        # maintenance while charging -> pending, then Unavailable once the session ends
        busy = charging[1]
        outcome = system.command(busy, CommandName.MAINTENANCE, MaintenanceArgs(enabled=True))
        assert outcome.accepted, outcome.reason
        watcher.wait_for(lambda: watcher.latest[busy].maintenance_pending, "maintenance pending")
        assert watcher.state(busy).status == EvseStatus.CHARGING
        assert system.command(busy, CommandName.STOP).accepted
        watcher.wait_for(watcher.status_is(busy, "Unavailable"), f"{busy} Unavailable")

        # a start on an EVSE in maintenance is rejected, with a reason
        outcome = system.command(busy, CommandName.START, StartArgs(session_id="sess-x"))
        assert not outcome.accepted
        assert outcome.reason == "maintenance"
        assert watcher.state(busy).status == EvseStatus.UNAVAILABLE

        # the others are still charging: their neighbours never noticed
        assert all(watcher.state(e).status == EvseStatus.CHARGING for e in charging[2:])


def test_killed_station_goes_offline_and_resumes_from_its_file(
    csms: tuple[CsmsSystem, FleetWatcher], broker_url: str, tmp_path: Path
) -> None:
    system, watcher = csms
    data_dir = tmp_path / "fleet"
    station = FleetProcess(
        broker_url, data_dir, stations=1, evses=2, speed=30, prefix="kx", keepalive=KEEPALIVE
    )
    evse = "kx-001.1"
    with station:
        watcher.wait_for(lambda: _all_available(watcher, [evse, "kx-001.2"]), "station up", 30)
        assert system.command(evse, CommandName.START, StartArgs(session_id="keep-me")).accepted
        watcher.wait_for(
            lambda: (
                watcher.latest[evse].status == "Charging" and watcher.latest[evse].energy_wh > 0
            ),
            "charging with energy",
        )
        station.kill()
        # The last will fires within 1.5 x keepalive of the crash.
        watcher.wait_for(
            lambda: (
                watcher.latest[evse].status == "Offline"
                and watcher.latest["kx-001.2"].status == "Offline"
            ),
            "both EVSEs Offline",
            timeout=1.5 * KEEPALIVE,
        )
        before = watcher.state(evse)
        assert before.session_open, "a session survives its station going offline"

    with FleetProcess(
        broker_url, data_dir, stations=1, evses=2, speed=30, prefix="kx", keepalive=KEEPALIVE
    ):
        watcher.wait_for(lambda: watcher.latest[evse].status == "Charging", "resumed", 30)
        after = watcher.state(evse)
        assert after.session_id == "keep-me"
        assert after.energy_wh >= before.energy_wh
        # An ask to the supervisor is a barrier: the event that woke us is already in its mailbox.
        system.evse_ref(evse)
        view = system.view.evse(evse)
        assert view is not None
        assert view.state.status == EvseStatus.CHARGING
