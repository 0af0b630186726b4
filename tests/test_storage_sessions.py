"""The storage contract for charging sessions and reservations, run on every backend: SQLite
(a file in tmp_path) and PostgreSQL (a fresh database per test; see tests/storage_fixtures.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from storage import ConstraintError, DuplicateError, ReservationOutcome, Storage
from tests.storage_support import all_at_once, driver, open_session

if TYPE_CHECKING:  # imported at run time by pytest, as a plugin, so that it is assert-rewritten
    from tests.storage_fixtures import FakeClock


pytest_plugins = ("tests.storage_fixtures",)


def test_an_opened_session_reads_back_with_no_energy_yet(store: Storage, clock: FakeClock) -> None:
    user = driver(store)
    session = open_session(store, driver_id=user.id, target_soc=80.0)

    assert store.sessions.get("s1") == session
    assert session.started_at == clock.now_ms
    assert (session.energy_wh, session.peak_power_w, session.ended_at) == (0.0, 0.0, None)
    assert session.target_soc == 80.0
    assert session.is_open
    assert store.sessions.get("unknown") is None


def test_opening_a_session_again_returns_the_first_unchanged(store: Storage) -> None:
    first = open_session(store, started_at=100)

    again = open_session(store, started_at=999, evse_id="other")

    assert again == first
    assert store.sessions.open_sessions() == [first]


def test_a_session_started_without_a_driver_is_recorded(store: Storage) -> None:
    session = open_session(store, driver_id=None)

    assert store.sessions.get(session.id) == session
    assert session.driver_id is None


def test_a_session_of_an_unknown_driver_is_refused(store: Storage) -> None:
    with pytest.raises(ConstraintError):
        open_session(store, driver_id="no-such-user")


def test_progress_only_raises_the_energy_and_keeps_the_peak_power(store: Storage) -> None:
    open_session(store)

    assert store.sessions.update_progress("s1", energy_wh=500.0, power_w=7000.0)
    assert store.sessions.update_progress("s1", energy_wh=400.0, power_w=11000.0)
    assert store.sessions.update_progress("s1", energy_wh=900, power_w=3000)

    session = store.sessions.get("s1")
    assert session is not None
    assert (session.energy_wh, session.peak_power_w) == (900.0, 11000.0)


def test_progress_on_an_unknown_or_closed_session_changes_nothing(store: Storage) -> None:
    open_session(store)
    store.sessions.close("s1", ended_at=50, energy_wh=100.0, end_reason="Local")

    assert store.sessions.update_progress("s1", energy_wh=5000.0, power_w=1.0) is False
    assert store.sessions.update_progress("unknown", energy_wh=5000.0, power_w=1.0) is False
    session = store.sessions.get("s1")
    assert session is not None
    assert session.energy_wh == 100.0


def test_closing_a_session_is_idempotent(store: Storage) -> None:
    open_session(store)
    store.sessions.update_progress("s1", energy_wh=800.0, power_w=7000.0)

    assert store.sessions.close("s1", ended_at=50, energy_wh=1200.0, end_reason="EVDisconnected")
    assert not store.sessions.close("s1", ended_at=60, energy_wh=1500.0, end_reason="Other")
    assert not store.sessions.close("unknown", ended_at=60, energy_wh=1.0, end_reason="Other")

    session = store.sessions.get("s1")
    assert session is not None
    assert (session.ended_at, session.energy_wh, session.end_reason) == (
        50,
        1200.0,
        "EVDisconnected",
    )
    assert not session.is_open


def test_closing_with_less_energy_than_recorded_keeps_the_higher_value(store: Storage) -> None:
    open_session(store)
    store.sessions.update_progress("s1", energy_wh=800.0, power_w=7000.0)

    store.sessions.close("s1", ended_at=50, energy_wh=700.0, end_reason="Local")

    session = store.sessions.get("s1")
    assert session is not None
    assert session.energy_wh == 800.0


def test_open_for_evse_finds_only_the_open_session_there(store: Storage) -> None:
    open_session(store, "old", evse_id="e1", started_at=10)
    store.sessions.close("old", ended_at=20, energy_wh=1.0, end_reason="Local")
    current = open_session(store, "new", evse_id="e1", started_at=30)
    open_session(store, "elsewhere", evse_id="e2", started_at=40)

    assert store.sessions.open_for_evse("e1") == current
    assert store.sessions.open_for_evse("e3") is None


def test_open_for_evse_prefers_the_newest_when_a_stop_was_missed(store: Storage) -> None:
    open_session(store, "stale", evse_id="e1", started_at=10)
    newest = open_session(store, "newest", evse_id="e1", started_at=30)

    assert store.sessions.open_for_evse("e1") == newest
    assert [s.id for s in store.sessions.open_sessions()] == ["stale", "newest"]


def test_a_drivers_sessions_are_newest_first_and_page_back_with_before(store: Storage) -> None:
    ada, bob = driver(store, "ada@example.org"), driver(store, "bob@example.org")
    for i in range(5):
        open_session(store, f"ada{i}", driver_id=ada.id, evse_id=f"e{i}", started_at=100 + i)
    open_session(store, "bob0", driver_id=bob.id, evse_id="e9", started_at=103)

    page = store.sessions.by_driver(ada.id, limit=2)
    assert [s.id for s in page] == ["ada4", "ada3"]
    older = store.sessions.by_driver(ada.id, limit=10, before=page[-1].started_at)
    assert [s.id for s in older] == ["ada2", "ada1", "ada0"]
    assert store.sessions.by_driver("nobody") == []


def test_open_sessions_lists_every_unclosed_session_oldest_first(store: Storage) -> None:
    for i, evse in enumerate(["e3", "e1", "e2"]):
        open_session(store, f"s{i}", evse_id=evse, started_at=10 + i)
    store.sessions.close("s1", ended_at=99, energy_wh=1.0, end_reason="Local")

    assert [s.id for s in store.sessions.open_sessions()] == ["s0", "s2"]


# -- reservations ----------------------------------------------------------------------------


def test_a_reservation_is_active_until_it_is_finished(store: Storage, clock: FakeClock) -> None:
    user = driver(store)
    reservation = store.reservations.create(user.id, "e1", expires_at=clock.now_ms + 900_000)

    assert store.reservations.get(reservation.id) == reservation
    assert store.reservations.active_for_evse("e1") == reservation
    assert store.reservations.active_for_driver(user.id) == reservation
    assert store.reservations.active() == [reservation]
    assert store.reservations.finish(reservation.id, at=5, outcome="used", reason="plugged in")

    finished = store.reservations.get(reservation.id)
    assert finished is not None
    assert (finished.ended_at, finished.outcome, finished.reason) == (
        5,
        ReservationOutcome.USED,
        "plugged in",
    )
    assert store.reservations.active_for_evse("e1") is None
    assert store.reservations.active_for_driver(user.id) is None
    assert store.reservations.active() == []


def test_a_reservation_keeps_the_id_and_times_it_is_given(store: Storage) -> None:
    user = driver(store)
    reservation = store.reservations.create(
        reservation_id="r-1", driver_id=user.id, evse_id="e1", created_at=10, expires_at=20
    )

    assert (reservation.id, reservation.created_at, reservation.expires_at) == ("r-1", 10, 20)
    assert store.reservations.get("r-1") == reservation


def test_finishing_a_reservation_succeeds_only_once(store: Storage) -> None:
    user = driver(store)
    reservation = store.reservations.create(user.id, "e1", expires_at=99)

    assert store.reservations.finish(reservation.id, 5, ReservationOutcome.EXPIRED)
    assert not store.reservations.finish(reservation.id, 6, "cancelled", "too late")
    assert not store.reservations.finish("unknown", 6, "cancelled")
    finished = store.reservations.get(reservation.id)
    assert finished is not None
    assert (finished.outcome, finished.ended_at) == (ReservationOutcome.EXPIRED, 5)


def test_racing_to_finish_a_reservation_exactly_one_wins(store: Storage) -> None:
    user = driver(store)
    reservation = store.reservations.create(user.id, "e1", expires_at=99)
    outcomes = ["used", "expired", "cancelled", "interrupted"]

    wins = all_at_once(4, lambda i: store.reservations.finish(reservation.id, i, outcomes[i]))

    assert sorted(wins) == [False, False, False, True]


def test_an_unknown_outcome_is_refused(store: Storage) -> None:
    user = driver(store)
    reservation = store.reservations.create(user.id, "e1", expires_at=99)

    with pytest.raises(ValueError, match="won"):
        store.reservations.finish(reservation.id, 5, "won")
    assert store.reservations.active_for_evse("e1") == reservation


def test_an_evse_holds_one_active_reservation_at_a_time(store: Storage) -> None:
    ada, bob = driver(store, "ada@example.org"), driver(store, "bob@example.org")
    first = store.reservations.create(ada.id, "e1", expires_at=99)

    with pytest.raises(DuplicateError):
        store.reservations.create(bob.id, "e1", expires_at=99)
    store.reservations.finish(first.id, 5, "cancelled")
    second = store.reservations.create(bob.id, "e1", expires_at=99)
    assert store.reservations.active_for_evse("e1") == second


def test_a_reservation_for_an_unknown_driver_is_refused(store: Storage) -> None:
    with pytest.raises(ConstraintError):
        store.reservations.create("no-such-user", "e1", expires_at=99)
