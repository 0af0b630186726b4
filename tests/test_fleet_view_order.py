"""The read model and the order its two writers' news arrives in.

The EVSE actors' changes and the supervisor's station changes reach
:class:`~actors.fleet_view.FleetView` by two queues, so a new EVSE's first report can come
before the birth that adds it to its station (an OCPP charge point announces its connectors
one by one). Such a report is kept and shown once the birth is here; only an EVSE the station
stopped listing (retired) has its late changes dropped.
"""

from __future__ import annotations

import pytest

from actors.evse_state import EvseState
from actors.fleet_view import MAX_RETIRED_PER_STATION, FleetView
from protocol import EvseDescriptor, EvseId, EvseStatus, StationDescriptor, StationId

pytestmark = pytest.mark.timeout(30)

SID = StationId("oc-002")


def station(*evses: str) -> StationDescriptor:
    return StationDescriptor(
        id=SID,
        name="OCPP",
        lat=45.0,
        lon=7.0,
        evses=tuple(EvseDescriptor(id=EvseId(e)) for e in evses),
    )


def state(evse: str, status: EvseStatus = EvseStatus.AVAILABLE) -> EvseState:
    return EvseState(station_id=SID, descriptor=EvseDescriptor(id=EvseId(evse)), status=status)


def listed(view: FleetView) -> list[tuple[str, str]]:
    found = view.station(SID)
    assert found is not None
    return [(e.state.evse_id, e.state.status.value) for e in found.evses]


def test_a_report_before_the_birth_that_adds_its_evse_is_shown_once_the_birth_is_here() -> None:
    view = FleetView(clock=lambda: 1.0)
    view.put_station(station("1"), online=True)
    view.put_evse(state("1"))
    view.put_evse(state("2"))  # connector 2's first status, ahead of the birth listing it
    assert listed(view) == [("oc-002.1", "Available")], "not a member before its birth"
    view.put_station(station("1", "2"), online=True)
    assert listed(view) == [("oc-002.1", "Available"), ("oc-002.2", "Available")]


def test_a_retired_evse_loses_its_row_and_its_late_changes() -> None:
    view = FleetView(clock=lambda: 1.0)
    view.put_station(station("1", "2"), online=True)
    view.put_evse(state("1"))
    view.put_evse(state("2"))
    view.put_station(station("1"), online=True)
    assert view.evse("oc-002.2") is None
    view.put_evse(state("2", EvseStatus.CHARGING))  # its stopped actor's last word
    assert view.evse("oc-002.2") is None, "a retired EVSE stays gone"
    view.put_station(station("1"), online=False)  # the station goes offline: still retired
    view.put_evse(state("2", EvseStatus.CHARGING))
    assert view.evse("oc-002.2") is None
    view.put_station(station("1", "2"), online=True)  # announced again: welcome back
    view.put_evse(state("2"))
    assert listed(view) == [("oc-002.1", "Available"), ("oc-002.2", "Available")]


def test_the_memory_of_retired_evses_is_bounded_per_station() -> None:
    view = FleetView(clock=lambda: 1.0)
    churn = MAX_RETIRED_PER_STATION + 50
    for n in range(1, churn + 1):  # a station renaming its one EVSE at every birth
        view.put_station(station(str(n)), online=True)
        view.put_evse(state(str(n)))
    view.put_station(station("0"), online=True)
    view.put_evse(state(str(churn)))  # the newest retired: still dropped
    assert view.evse(f"oc-002.{churn}") is None
    view.put_evse(state("1"))  # the oldest, forgotten: taken (never listed, never shown)
    assert view.evse("oc-002.1") is not None
    assert listed(view) == []
