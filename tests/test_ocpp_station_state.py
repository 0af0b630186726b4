"""``gateway.ocpp_commands.StationState``: what the translator keeps of a charge point stays
bounded however long it runs."""

from __future__ import annotations

import pytest

from gateway.ocpp_commands import MAX_RESERVATION_NUMBERS, StationState
from protocol import StationId

pytestmark = [pytest.mark.timeout(30)]


def test_a_charge_points_reservation_numbers_are_distinct_and_bounded() -> None:
    """A charge point reserved for months keeps a bounded map of our reservation ids to its
    OCPP reservationIds; a recent reservation keeps its number, none is given twice."""
    state = StationState(station_id=StationId("cp-r"), name="r")
    total = MAX_RESERVATION_NUMBERS * 3
    numbers = [state.reservation_number(f"res-{n}") for n in range(total)]
    assert len(set(numbers)) == total
    assert all(0 < n < 2**31 for n in numbers)
    assert len(state.reservations) <= MAX_RESERVATION_NUMBERS
    assert state.reservation_number(f"res-{total - 1}") == numbers[-1]
    assert state.reservation_number(f"res-{total - 2}") == numbers[-2]
