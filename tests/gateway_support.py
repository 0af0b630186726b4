"""Shared by the Falcon gateway tests (tests/test_gateway_*.py): a real :class:`CsmsSystem` that
is never started, its :class:`FleetView` filled directly as the supervisor would fill it, on a
wall clock the test moves by hand, and falcon's TestClient on its app."""

from __future__ import annotations

from typing import Any

import falcon
import falcon.testing
import pytest

from actors.evse_state import EvseState
from actors.fleet_view import FleetView
from actors.system import CsmsConfig, CsmsSystem
from gateway.app import create_app
from protocol import EvseDescriptor, EvseId, EvseStatus, SessionId, StationDescriptor, StationId
from tests.support import wire_id


class FakeClock:
    """A wall clock the test moves by hand."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def station(station_id: str, evses: int = 2, name: str | None = None) -> StationDescriptor:
    return StationDescriptor(
        id=StationId(station_id),
        name=name or f"Station {station_id}",
        lat=52.52,
        lon=13.405,
        evses=tuple(
            EvseDescriptor(id=EvseId(str(n)), max_power_w=11_000.0) for n in range(1, evses + 1)
        ),
    )


def evse(evse_id: str, station_id: str, status: EvseStatus, **fields: Any) -> EvseState:
    return EvseState(
        station_id=StationId(station_id),
        descriptor=EvseDescriptor(id=wire_id(evse_id), max_power_w=11_000.0),
        status=status,
        **fields,
    )


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def csms(clock: FakeClock) -> CsmsSystem:
    """A CsmsSystem that is never started, with two stations in its read model."""
    system = CsmsSystem(CsmsConfig(mqtt_url="mqtt://127.0.0.1:1"))
    system.view = FleetView(clock=clock)
    system.view.put_station(station("st-002"), online=False)
    system.view.put_station(station("st-001"), online=True)
    system.view.put_evse(evse("st-001.1", "st-001", EvseStatus.AVAILABLE))
    system.view.put_evse(
        evse(
            "st-001.2",
            "st-001",
            EvseStatus.CHARGING,
            soc=41.2345,
            power_w=10_987.654,
            energy_wh=1234.567,
            session_id=SessionId("sess-7"),
            session_energy_wh=456.789,
            target_soc=80.0,
        )
    )
    system.view.put_evse(evse("st-002.1", "st-002", EvseStatus.OFFLINE))
    system.view.put_evse(
        evse("st-002.2", "st-002", EvseStatus.FAULTED), alert="restarted too often"
    )
    return system


@pytest.fixture
def client(csms: CsmsSystem) -> falcon.testing.TestClient:
    return falcon.testing.TestClient(create_app(csms))
