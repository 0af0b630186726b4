"""The shape issue 11 asks for, on a running CSMS: one Pykka actor per EVSE, one crash
restarts one.

A real :class:`~actors.system.CsmsSystem` on a real Mosquitto, with 10 simulated stations of
2 EVSEs in their own process: ``pykka.ActorRegistry`` holds exactly 20 live ``EvseActor``\\ s;
one made to crash is restarted alone, and the other 19 are the same actors as before.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pykka
import pytest

from actors.evse import EvseActor
from actors.evse_logic import Evse
from actors.system import CsmsConfig, CsmsSystem
from protocol import CommandName, EvseId
from tests.support import FleetProcess, FleetWatcher

STATIONS, EVSES = 10, 2
KEYS = [EvseId(f"sh-{s:03d}.{e}") for s in range(1, STATIONS + 1) for e in range(1, EVSES + 1)]


@dataclass(frozen=True)
class Crash:
    """Told to one EVSE actor: its logic raises on it (a bug, simulated)."""


@pytest.fixture
def crashable(monkeypatch: pytest.MonkeyPatch) -> None:
    real_step = Evse.step

    def step(self: Evse, message: Any, now_ms: int) -> Any:
        if isinstance(message, Crash):
            raise RuntimeError("simulated bug in the EVSE logic")
        return real_step(self, message, now_ms)

    monkeypatch.setattr(Evse, "step", step)


@pytest.fixture
def running(
    crashable: None, mosquitto_url: str, tmp_path: Path
) -> Iterator[tuple[CsmsSystem, FleetWatcher]]:
    watcher = FleetWatcher()
    system = CsmsSystem(
        CsmsConfig(mqtt_url=mosquitto_url, listeners=(watcher,), command_timeout_s=10)
    ).start()
    fleet = FleetProcess(
        mosquitto_url, tmp_path / "fleet", stations=STATIONS, evses=EVSES, speed=60, prefix="sh"
    ).start()
    try:
        watcher.wait_for(
            lambda: all(watcher.status_is(k, "Available")() for k in KEYS), "the fleet", 60
        )
        yield system, watcher
    finally:
        fleet.terminate()
        system.stop()
        pykka.ActorRegistry.stop_all()


def live_evse_actors() -> list[pykka.ActorRef[Any]]:
    return [ref for ref in pykka.ActorRegistry.get_by_class(EvseActor) if ref.is_alive()]


def test_ten_stations_of_two_evses_are_twenty_evse_actors_and_a_crash_restarts_one(
    running: tuple[CsmsSystem, FleetWatcher],
) -> None:
    system, watcher = running
    refs = {key: system.evse_ref(key) for key in KEYS}
    assert len(set(refs.values())) == 20
    assert sorted(map(id, live_evse_actors())) == sorted(map(id, refs.values()))
    assert all(issubclass(ref.actor_class, pykka.ThreadingActor) for ref in refs.values())

    victim = KEYS[7]
    refs[victim].tell(Crash())
    watcher.wait_for(
        lambda: any(a.kind == "actor_restarted" and a.evse_id == victim for a in watcher.alerts),
        "the victim's restart",
    )
    assert refs[victim].actor_stopped.wait(10)
    restarted = system.evse_ref(victim)
    assert restarted is not refs[victim]
    assert restarted.is_alive()
    assert system.command(victim, CommandName.INFO).accepted, "the new actor serves its EVSE"
    for key in KEYS:
        if key != victim:
            assert system.evse_ref(key) is refs[key], f"{key} was touched"
    assert len(live_evse_actors()) == 20
    restarts = [a for a in watcher.alerts if a.kind == "actor_restarted"]
    assert [a.evse_id for a in restarts] == [victim]
