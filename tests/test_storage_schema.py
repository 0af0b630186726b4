"""The storage contract for the schema, its files and threads, run on every backend: SQLite (a
file in tmp_path) and PostgreSQL (a fresh database per test; see tests/storage_fixtures.py);
then what is SQLite's own: the default file, WAL mode, an unreachable or in-memory database, and
the migration of version 1 EVSE ids."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import event, text

from storage import (
    DB_FILENAME,
    LATEST_VERSION,
    DuplicateError,
    MigrationError,
    Role,
    Storage,
    StorageUnavailableError,
    open_storage,
)
from tests.storage_support import HOUR_MS, all_at_once, driver, open_session

if TYPE_CHECKING:  # imported at run time by pytest, as a plugin, so that it is assert-rewritten
    from tests.storage_fixtures import FakeClock, OpenStore


pytest_plugins = ("tests.storage_fixtures",)


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
