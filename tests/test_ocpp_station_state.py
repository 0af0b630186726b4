"""``gateway.ocpp_commands.StationState``: what the translator keeps of a charge point stays
bounded however long it runs, and the session ids it makes new and valid."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.ocpp_commands import MAX_RESERVATION_NUMBERS, StationState
from gateway.ocpp_station import TransactionStore
from protocol import StationId
from protocol.ids import valid_id, valid_station_id

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


def test_a_local_starts_session_id_is_new_even_after_the_transaction_ids_start_again(
    tmp_path: Path,
) -> None:
    """A translator whose transactions file is gone (a new data dir against the same database)
    gives transaction ids from 1 again: the session of a start by badge must still be a new
    one, never an old session's id (its row, its driver)."""
    first = TransactionStore(tmp_path / "a" / "transactions.jsonl")
    again = TransactionStore(tmp_path / "b" / "transactions.jsonl")
    one = first.new("cp-1", 1, None, 0.0)
    lines = (tmp_path / "a" / "transactions.jsonl").read_text().splitlines()
    assert len(lines) == 1  # named and written at once, in one journal line
    two = again.new("cp-1", 1, None, 0.0)
    assert one.transaction_id == two.transaction_id
    assert one.session_id != two.session_id
    assert all(r.session_id.startswith("ocpp-cp-1-1-") for r in (one, two))
    assert TransactionStore(tmp_path / "a" / "transactions.jsonl").get("cp-1", 1) == one
    # the CSMS's own session keeps its id
    assert first.new("cp-1", 1, "sess-42", 0.0).session_id == "sess-42"
    # a station id as long as allowed still gives a session id the protocol takes (<= 64)
    longest = "S" * 64
    assert valid_station_id(longest)
    assert valid_id(first.new(longest, 1, None, 0.0).session_id)
