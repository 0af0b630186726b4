"""The storage contract, run on every backend: SQLite (a file in tmp_path) and PostgreSQL
(a fresh database per test; see tests/storage_fixtures.py)."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pytest
from sqlalchemy import event, text

from storage import (
    DB_FILENAME,
    LATEST_VERSION,
    ConstraintError,
    DuplicateError,
    MigrationError,
    ReservationOutcome,
    Role,
    Storage,
    StorageUnavailableError,
    User,
    open_storage,
)

if TYPE_CHECKING:  # imported at run time by pytest, as a plugin, so that it is assert-rewritten
    from tests.storage_fixtures import FakeClock, OpenStore

pytest_plugins = ("tests.storage_fixtures",)

T = TypeVar("T")
HOUR_MS = 3_600_000
WAIT_S = 30


def all_at_once(threads: int, work: Callable[[int], T]) -> list[T]:
    """Run ``work(i)`` on ``threads`` threads released together by a barrier."""
    barrier = threading.Barrier(threads, timeout=WAIT_S)

    def run(i: int) -> T:
        barrier.wait()
        return work(i)

    with ThreadPoolExecutor(threads) as pool:
        futures = [pool.submit(run, i) for i in range(threads)]
        return [future.result(timeout=WAIT_S) for future in futures]


def driver(store: Storage, email: str = "driver@example.org") -> User:
    return store.users.create(email, "argon2-hash", Role.DRIVER)


# -- users -----------------------------------------------------------------------------------


def test_a_created_user_is_found_by_id_and_by_email(store: Storage, clock: FakeClock) -> None:
    user = store.users.create("ada@example.org", "hash", "operator")

    assert len(user.id) == 32
    assert user.role is Role.OPERATOR
    assert user.created_at == clock.now_ms
    assert store.users.get(user.id) == user
    assert store.users.by_email("ada@example.org") == user


def test_emails_are_stored_stripped_and_lower_cased_and_found_in_any_case(store: Storage) -> None:
    user = store.users.create("  Ada@Example.ORG ", "hash", Role.DRIVER)

    assert user.email == "ada@example.org"
    assert store.users.by_email("ADA@example.org ") == user


def test_an_email_already_taken_in_another_case_is_a_duplicate(store: Storage) -> None:
    store.users.create("ada@example.org", "hash", Role.DRIVER)

    with pytest.raises(DuplicateError):
        store.users.create("ADA@example.org", "other", Role.OPERATOR)
    assert store.users.count() == 1


def test_an_unknown_role_or_an_empty_email_is_refused(store: Storage) -> None:
    with pytest.raises(ValueError, match="root"):
        store.users.create("ada@example.org", "hash", "root")
    with pytest.raises(ValueError, match="empty"):
        store.users.create("  ", "hash", Role.DRIVER)
    assert store.users.count() == 0


def test_a_users_password_hash_can_be_replaced(store: Storage) -> None:
    user = driver(store)

    assert store.users.set_password_hash(user.id, "stronger-hash")
    assert not store.users.set_password_hash("nobody", "hash")
    stored = store.users.get(user.id)
    assert stored is not None
    assert stored.password_hash == "stronger-hash"


def test_unknown_users_are_none(store: Storage) -> None:
    assert store.users.get("nobody") is None
    assert store.users.by_email("nobody@example.org") is None
    assert store.users.by_email("") is None


def test_users_are_listed_oldest_first_in_pages_and_counted(
    store: Storage, clock: FakeClock
) -> None:
    created = []
    for i in range(5):
        created.append(store.users.create(f"u{i}@example.org", "hash", Role.DRIVER))
        clock.advance(1)

    assert store.users.list(limit=2, offset=0) == created[:2]
    assert store.users.list(limit=2, offset=2) == created[2:4]
    assert store.users.list(limit=10, offset=4) == created[4:]
    assert store.users.count() == 5


# -- refresh tokens --------------------------------------------------------------------------


def test_an_added_refresh_token_reads_back_unused(store: Storage, clock: FakeClock) -> None:
    user = driver(store)
    token = store.refresh_tokens.add("h1", user.id, "fam", expires_at=clock.now_ms + HOUR_MS)

    assert store.refresh_tokens.get("h1") == token
    assert token.created_at == clock.now_ms
    assert (token.used_at, token.revoked_at) == (None, None)
    assert store.refresh_tokens.get("unknown") is None


def test_a_token_hash_is_unique_and_its_user_must_exist(store: Storage) -> None:
    user = driver(store)
    store.refresh_tokens.add("h1", user.id, "fam", expires_at=1)

    with pytest.raises(DuplicateError):
        store.refresh_tokens.add("h1", user.id, "fam", expires_at=1)
    with pytest.raises(ConstraintError):  # foreign keys are enforced on SQLite too
        store.refresh_tokens.add("h2", "no-such-user", "fam", expires_at=1)


def test_a_refresh_token_can_be_used_only_once(store: Storage) -> None:
    user = driver(store)
    store.refresh_tokens.add("h1", user.id, "fam", expires_at=99)

    assert store.refresh_tokens.mark_used("h1", at=10) is True
    assert store.refresh_tokens.mark_used("h1", at=11) is False
    assert store.refresh_tokens.mark_used("unknown", at=11) is False
    token = store.refresh_tokens.get("h1")
    assert token is not None
    assert token.used_at == 10


def test_two_threads_racing_to_use_one_token_exactly_one_wins(store: Storage) -> None:
    user = driver(store)
    for round_ in range(5):
        store.refresh_tokens.add(f"race{round_}", user.id, "fam", expires_at=99)
        wins = all_at_once(4, lambda i, r=round_: store.refresh_tokens.mark_used(f"race{r}", i))
        assert sorted(wins) == [False, False, False, True]


def test_revoking_a_family_revokes_only_that_family_once(store: Storage) -> None:
    user = driver(store)
    for hash_, family in (("a1", "A"), ("a2", "A"), ("b1", "B")):
        store.refresh_tokens.add(hash_, user.id, family, expires_at=99)

    assert store.refresh_tokens.revoke_family("A", at=20) == 2
    assert store.refresh_tokens.revoke_family("A", at=30) == 0
    a1, b1 = store.refresh_tokens.get("a1"), store.refresh_tokens.get("b1")
    assert a1 is not None
    assert a1.revoked_at == 20
    assert b1 is not None
    assert b1.revoked_at is None
    assert store.refresh_tokens.mark_used("a2", at=40) is False
    assert store.refresh_tokens.mark_used("b1", at=40) is True


def test_revoking_a_user_revokes_all_their_tokens_and_no_one_elses(store: Storage) -> None:
    ada, bob = driver(store, "ada@example.org"), driver(store, "bob@example.org")
    store.refresh_tokens.add("a1", ada.id, "A", expires_at=99)
    store.refresh_tokens.add("a2", ada.id, "A2", expires_at=99)
    store.refresh_tokens.add("b1", bob.id, "B", expires_at=99)

    assert store.refresh_tokens.revoke_user(ada.id, at=5) == 2
    assert store.refresh_tokens.mark_used("a1", at=6) is False
    assert store.refresh_tokens.mark_used("b1", at=6) is True


# -- charging sessions -----------------------------------------------------------------------


def open_session(store: Storage, session_id: str = "s1", **overrides: Any) -> Any:
    fields: dict[str, Any] = {"evse_id": "st1-1", "station_id": "st1", "start_energy_wh": 1000.0}
    fields.update(overrides)
    return store.sessions.open(session_id, **fields)


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


# -- notifications ---------------------------------------------------------------------------


def test_notifications_come_back_newest_first_with_their_data(
    store: Storage, clock: FakeClock
) -> None:
    user = driver(store)
    first = store.notifications.add(user.id, "session_started", "Charging", {"evse_id": "e1"})
    clock.advance(1000)
    second = store.notifications.add(user.id, "session_ended", "Done", {"kwh": 7.5, "n": [1]})
    third = store.notifications.add(user.id, "note", "Plain", at=42)

    assert store.notifications.for_user(user.id) == [third, second, first]
    assert first.id < second.id < third.id
    assert first.created_at == clock.now_ms - 1000
    assert second.data == {"kwh": 7.5, "n": [1]}
    assert (third.data, third.created_at, third.read_at) == ({}, 42, None)


def test_notifications_after_an_id_are_only_the_newer_ones(store: Storage) -> None:
    user = driver(store)
    notes = [store.notifications.add(user.id, "k", f"m{i}") for i in range(4)]

    assert store.notifications.for_user(user.id, after_id=notes[1].id) == [notes[3], notes[2]]
    assert store.notifications.for_user(user.id, limit=1) == [notes[3]]


def test_marking_read_touches_only_the_users_own_unread_notifications(
    store: Storage, clock: FakeClock
) -> None:
    ada, bob = driver(store, "ada@example.org"), driver(store, "bob@example.org")
    a1, a2 = (store.notifications.add(ada.id, "k", m) for m in ("a1", "a2"))
    b1 = store.notifications.add(bob.id, "k", "b1")

    assert store.notifications.mark_read(ada.id, [a1.id, b1.id]) == 1
    assert store.notifications.mark_read(ada.id, [a1.id]) == 0
    assert store.notifications.mark_read(ada.id, []) == 0

    read_at = {n.id: n.read_at for n in store.notifications.for_user(ada.id)}
    assert read_at == {a1.id: clock.now_ms, a2.id: None}
    assert store.notifications.for_user(bob.id)[0].read_at is None
    assert store.notifications.unread_count(ada.id) == 1


# -- schema, files, threads ------------------------------------------------------------------


def test_a_new_database_is_at_the_latest_schema_version(store: Storage) -> None:
    assert store.schema_version() == LATEST_VERSION


def test_opening_twice_migrates_once_and_keeps_the_version(
    open_store: OpenStore, clock: FakeClock
) -> None:
    first = open_store()
    clock.advance(HOUR_MS)
    second = open_store()

    assert second.schema_version() == first.schema_version() == LATEST_VERSION
    with second.engine.connect() as conn:
        rows = conn.execute(text("SELECT version, applied_at FROM schema_version")).all()
    applied = clock.now_ms - HOUR_MS
    assert sorted(tuple(row) for row in rows) == [
        (version, applied) for version in range(1, LATEST_VERSION + 1)
    ]


def test_a_database_newer_than_the_code_is_refused(open_store: OpenStore) -> None:
    store = open_store()
    with store.engine.begin() as conn:
        conn.execute(
            text("INSERT INTO schema_version (version, name, applied_at) VALUES (:v, :n, 0)"),
            {"v": LATEST_VERSION + 1, "n": "from_the_future"},
        )

    with pytest.raises(MigrationError, match="newer"):
        open_store()


def test_opening_from_two_threads_at_once_migrates_once(open_store: OpenStore) -> None:
    stores = all_at_once(4, lambda _: open_store())

    assert [s.schema_version() for s in stores] == [LATEST_VERSION] * 4
    assert stores[0].users.create("ada@example.org", "h", Role.DRIVER) is not None


def test_data_survives_close_and_reopen(open_store: OpenStore) -> None:
    store = open_store()
    user = driver(store)
    open_session(store, driver_id=user.id)
    store.close()

    reopened = open_store()

    assert reopened.users.get(user.id) == user
    assert [s.id for s in reopened.sessions.by_driver(user.id)] == ["s1"]


def test_a_transaction_keeps_all_or_nothing(store: Storage) -> None:
    user = driver(store)

    def notify_then_sign_up_again() -> None:
        with store.transaction():
            store.notifications.add(user.id, "k", "lost with the rest")
            store.users.create(user.email, "h", Role.DRIVER)

    with pytest.raises(DuplicateError):
        notify_then_sign_up_again()

    assert store.notifications.for_user(user.id) == []


def test_storage_works_from_many_threads_each_on_its_own_connection(store: Storage) -> None:
    users_per_thread, threads = 10, 8
    lock = threading.Lock()
    checked_out: dict[int, int] = {}  # connection record -> the thread holding it
    handed_over: list[str] = []
    threads_seen: set[int] = set()

    def on_checkout(_dbapi: object, record: object, _proxy: object) -> None:
        with lock:
            checked_out[id(record)] = threading.get_ident()
            threads_seen.add(threading.get_ident())

    def on_checkin(_dbapi: object, record: object) -> None:
        with lock:
            owner = checked_out.pop(id(record), None)
            if owner not in (None, threading.get_ident()):
                handed_over.append(f"checked out by {owner}, in by {threading.get_ident()}")

    event.listen(store.engine, "checkout", on_checkout)
    event.listen(store.engine, "checkin", on_checkin)

    def sign_up_and_notify(t: int) -> int:
        for i in range(users_per_thread):
            user = store.users.create(f"t{t}u{i}@example.org", "h", Role.DRIVER)
            store.notifications.add(user.id, "welcome", "Hello")
            assert store.users.by_email(user.email) == user
        return len(store.users.list(limit=1000))

    seen_counts = all_at_once(threads, sign_up_and_notify)

    assert store.users.count() == users_per_thread * threads
    assert all(users_per_thread <= n <= users_per_thread * threads for n in seen_counts)
    assert handed_over == []
    assert len(threads_seen) >= threads


# -- SQLite specifics ------------------------------------------------------------------------


def test_the_default_database_is_a_file_in_the_data_dir(tmp_path: Path) -> None:
    data_dir = tmp_path / "nested" / "data"
    with open_storage(data_dir=data_dir) as store:
        assert store.dialect == "sqlite"
        driver(store)

    assert (data_dir / DB_FILENAME).is_file()


def test_sqlite_runs_in_wal_mode_with_foreign_keys_and_a_busy_timeout(tmp_path: Path) -> None:
    with open_storage(data_dir=tmp_path) as store, store.engine.connect() as conn:
        pragmas = {
            name: conn.exec_driver_sql(f"PRAGMA {name}").scalar()
            for name in ("journal_mode", "synchronous", "busy_timeout", "foreign_keys")
        }
    assert pragmas == {
        "journal_mode": "wal",
        "synchronous": 1,
        "busy_timeout": 5000,
        "foreign_keys": 1,
    }
    with sqlite3.connect(tmp_path / DB_FILENAME) as raw:  # WAL is a property of the file
        assert raw.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_an_unreachable_database_is_reported_as_unavailable(tmp_path: Path) -> None:
    with pytest.raises(StorageUnavailableError):
        open_storage("postgresql://postgres@127.0.0.1:1/none?connect_timeout=2", data_dir=tmp_path)


def test_in_memory_sqlite_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="per thread"):
        open_storage("sqlite://", data_dir=tmp_path)


def test_evse_ids_of_version_1_data_become_station_dot_evse(open_store: OpenStore) -> None:
    """Migration 4: stored ids of the old global form are renamed after their station."""
    from storage import EvseStateRow, StatusEvent
    from storage._migrations import MIGRATIONS

    store = open_store()
    old, new = "st-001-1", "st-001.st-001-1"
    store.evse_states.put_many(
        [
            EvseStateRow(evse_id=old, station_id="st-001", state={"evse_id": old}, updated_at=1),
            EvseStateRow(evse_id="st-002.1", station_id="st-002", state={}, updated_at=1),
        ]
    )
    store.sessions.open("s-old", evse_id=old, station_id="st-001")
    store.status_events.add_many(
        [StatusEvent(evse_id=old, ts=1, from_status="Available", to_status="Charging")]
    )
    with store.engine.begin() as conn:
        MIGRATIONS[3](conn)  # as on a database written by version 1

    assert sorted(row.evse_id for row in store.evse_states.all()) == [new, "st-002.1"]
    session = store.sessions.get("s-old")
    assert session is not None
    assert session.evse_id == new
    assert [e.to_status for e in store.status_events.for_evse(new)] == ["Charging"]
    assert store.status_events.for_evse(old) == []
