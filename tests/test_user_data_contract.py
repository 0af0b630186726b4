"""The user-data contract (charging sessions and notifications), run with the same assertions
on every backend:

``sqlite`` / ``postgresql``
    ``storage.SessionStore`` and ``storage.NotificationStore`` (tests/storage_fixtures.py: a
    file in tmp_path; a fresh PostgreSQL database per test, skipped when no server answers).
``rtdb-fake``
    ``storage.firebase_rtdb`` on ``FakeRealtimeDatabase`` (tests/fake_rtdb.py), an in-memory
    FAKE of the few ``firebase_admin.db`` calls the stores make. It is not Firebase: the
    Realtime Database emulator cannot run on this machine (it needs Java 21 and downloads a
    JAR), so this is all the RTDB stores are exercised against here.
``rtdb-emulator``
    the same stores on a real Realtime Database emulator, **generated only when
    FIREBASE_DATABASE_EMULATOR_HOST is set** (e.g. ``127.0.0.1:9000``; start it with
    ``firebase emulators:start --only database --project demo-smartcharge``). When the
    variable is unset the case does not exist at all, rather than being skipped, because CI
    (SMARTCHARGE_REQUIRE_ALL=1) turns every skip into a failure and this machine cannot run
    that emulator. Each test writes under its own random root path.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from storage import Role, open_storage
from storage.firebase_rtdb import RtdbNotificationStore, RtdbSessionStore, rtdb_root
from tests.fake_rtdb import FakeRealtimeDatabase

if TYPE_CHECKING:  # imported at run time by pytest, as a plugin, so that it is assert-rewritten
    from tests.storage_fixtures import FakeClock

pytest_plugins = ("tests.storage_fixtures",)

RTDB_EMULATOR_ENV = "FIREBASE_DATABASE_EMULATOR_HOST"
BACKENDS = ["sqlite", "postgresql", "rtdb-fake"]
if os.environ.get(RTDB_EMULATOR_ENV):
    BACKENDS.append("rtdb-emulator")


@dataclass
class UserData:
    sessions: Any
    notifications: Any
    new_user: Callable[[], str]
    """A new user id the backend accepts (SQL has foreign keys to ``users``)."""


@pytest.fixture(params=BACKENDS)
def user_data(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[UserData]:
    kind = str(request.param)
    if kind in ("sqlite", "postgresql"):
        url = None if kind == "sqlite" else str(request.getfixturevalue("pg_database_url"))
        storage = open_storage(url, data_dir=tmp_path / "data", clock_ms=clock)

        def new_sql_user() -> str:
            return storage.users.create(f"{uuid.uuid4().hex}@example.org", "h", Role.DRIVER).id

        try:
            yield UserData(storage.sessions, storage.notifications, new_sql_user)
        finally:
            storage.close()
        return
    if kind == "rtdb-fake":
        root: Any = FakeRealtimeDatabase().root()
        app = None
    else:
        import firebase_admin

        from gateway.firebase_auth import firebase_app

        monkeypatch.setenv("SMARTCHARGE_TEST_MODE", "1")
        app = firebase_app(
            "demo-smartcharge",
            database_url="https://demo-smartcharge-default-rtdb.firebaseio.com",
        )
        root = rtdb_root(app, f"/contract-{uuid.uuid4().hex}")
    try:
        yield UserData(
            RtdbSessionStore(root, clock),
            RtdbNotificationStore(root, clock),
            lambda: uuid.uuid4().hex,
        )
    finally:
        if app is not None:
            root.delete()
            firebase_admin.delete_app(app)


def open_session(data: UserData, session_id: str = "s1", **overrides: Any) -> Any:
    fields: dict[str, Any] = {"evse_id": "st1-1", "station_id": "st1", "start_energy_wh": 1000.0}
    fields.update(overrides)
    return data.sessions.open(session_id, **fields)


# -- sessions --------------------------------------------------------------------------------


def test_an_opened_session_reads_back_with_no_energy_yet(
    user_data: UserData, clock: FakeClock
) -> None:
    driver = user_data.new_user()
    session = open_session(user_data, driver_id=driver, target_soc=80.0)

    assert user_data.sessions.get("s1") == session
    assert session.driver_id == driver
    assert session.started_at == clock.now_ms
    assert (session.energy_wh, session.peak_power_w, session.ended_at) == (0.0, 0.0, None)
    assert (session.start_energy_wh, session.target_soc) == (1000.0, 80.0)
    assert session.is_open
    assert user_data.sessions.get("unknown") is None


def test_opening_a_session_again_returns_the_first_unchanged(user_data: UserData) -> None:
    first = open_session(user_data, started_at=100)

    again = open_session(user_data, started_at=999, evse_id="other")

    assert again == first
    assert user_data.sessions.open_sessions() == [first]


def test_a_session_without_a_driver_is_recorded(user_data: UserData) -> None:
    session = open_session(user_data, driver_id=None)

    assert user_data.sessions.get(session.id) == session
    assert session.driver_id is None


def test_progress_only_raises_energy_and_peak_power(user_data: UserData) -> None:
    open_session(user_data)

    assert user_data.sessions.update_progress("s1", energy_wh=500.0, power_w=7000.0)
    assert user_data.sessions.update_progress("s1", energy_wh=400.0, power_w=11000.0)
    assert user_data.sessions.update_progress("s1", energy_wh=900, power_w=3000)

    session = user_data.sessions.get("s1")
    assert session is not None
    assert (session.energy_wh, session.peak_power_w) == (900.0, 11000.0)


def test_progress_on_an_unknown_or_closed_session_changes_nothing(user_data: UserData) -> None:
    open_session(user_data)
    user_data.sessions.close("s1", ended_at=50, energy_wh=100.0, end_reason="Local")

    assert user_data.sessions.update_progress("s1", energy_wh=5000.0, power_w=1.0) is False
    assert user_data.sessions.update_progress("unknown", energy_wh=5000.0, power_w=1.0) is False
    session = user_data.sessions.get("s1")
    assert session is not None
    assert session.energy_wh == 100.0
    assert user_data.sessions.get("unknown") is None


def test_closing_a_session_is_idempotent_and_keeps_the_higher_energy(
    user_data: UserData,
) -> None:
    open_session(user_data)
    user_data.sessions.update_progress("s1", energy_wh=800.0, power_w=7000.0)

    assert user_data.sessions.close("s1", ended_at=50, energy_wh=700.0, end_reason="EVDisconnected")
    assert not user_data.sessions.close("s1", ended_at=60, energy_wh=1500.0, end_reason="Other")
    assert not user_data.sessions.close("unknown", ended_at=60, energy_wh=1.0, end_reason="Other")

    session = user_data.sessions.get("s1")
    assert session is not None
    assert (session.ended_at, session.energy_wh, session.end_reason) == (
        50,
        800.0,
        "EVDisconnected",
    )
    assert session.peak_power_w == 7000.0
    assert not session.is_open


def test_open_for_evse_finds_the_newest_open_session_there(user_data: UserData) -> None:
    open_session(user_data, "old", evse_id="e1", started_at=10)
    user_data.sessions.close("old", ended_at=20, energy_wh=1.0, end_reason="Local")
    stale = open_session(user_data, "stale", evse_id="e1", started_at=25)
    current = open_session(user_data, "new", evse_id="e1", started_at=30)
    open_session(user_data, "elsewhere", evse_id="e2", started_at=40)

    assert user_data.sessions.open_for_evse("e1") == current
    assert user_data.sessions.open_for_evse("e3") is None
    user_data.sessions.close("new", ended_at=50, energy_wh=1.0, end_reason="Local")
    assert user_data.sessions.open_for_evse("e1") == stale


def test_a_drivers_sessions_are_newest_first_and_page_back_with_before(
    user_data: UserData,
) -> None:
    ada, bob = user_data.new_user(), user_data.new_user()
    for i in range(5):
        open_session(user_data, f"ada{i}", driver_id=ada, evse_id=f"e{i}", started_at=100 + i)
    open_session(user_data, "bob0", driver_id=bob, evse_id="e9", started_at=103)
    user_data.sessions.close("ada1", ended_at=200, energy_wh=1.0, end_reason="Local")

    page = user_data.sessions.by_driver(ada, limit=2)
    assert [s.id for s in page] == ["ada4", "ada3"]
    older = user_data.sessions.by_driver(ada, limit=10, before=page[-1].started_at)
    assert [s.id for s in older] == ["ada2", "ada1", "ada0"]
    assert older[1].ended_at == 200
    assert [s.id for s in user_data.sessions.by_driver(bob)] == ["bob0"]
    assert user_data.sessions.by_driver("nobody") == []


def test_open_sessions_lists_every_unclosed_session_oldest_first(user_data: UserData) -> None:
    for i, evse in enumerate(["e3", "e1", "e2"]):
        open_session(user_data, f"s{i}", evse_id=evse, started_at=10 + i)
    user_data.sessions.close("s1", ended_at=99, energy_wh=1.0, end_reason="Local")

    assert [s.id for s in user_data.sessions.open_sessions()] == ["s0", "s2"]


# -- notifications ---------------------------------------------------------------------------


def test_notifications_come_back_newest_first_with_their_data(
    user_data: UserData, clock: FakeClock
) -> None:
    user = user_data.new_user()
    notes = user_data.notifications
    first = notes.add(user, "session_started", "Charging", {"evse_id": "e1"})
    clock.advance(1000)
    second = notes.add(user, "session_ended", "Done", {"kwh": 7.5, "n": [1], "empty": {}})
    third = notes.add(user, "note", "Plain", at=42)

    assert notes.for_user(user) == [third, second, first]
    assert first.id < second.id < third.id
    assert first.created_at == clock.now_ms - 1000
    assert second.data == {"kwh": 7.5, "n": [1], "empty": {}}
    assert (third.data, third.created_at, third.read_at) == ({}, 42, None)
    assert notes.for_user(user_data.new_user()) == []


def test_notifications_after_an_id_are_only_the_newer_ones(user_data: UserData) -> None:
    user = user_data.new_user()
    notes = [user_data.notifications.add(user, "k", f"m{i}") for i in range(12)]

    assert user_data.notifications.for_user(user, after_id=notes[9].id) == [notes[11], notes[10]]
    assert user_data.notifications.for_user(user, limit=1) == [notes[11]]
    assert user_data.notifications.for_user(user, limit=3, after_id=notes[0].id) == [
        notes[11],
        notes[10],
        notes[9],
    ]
    assert user_data.notifications.for_user(user, after_id=notes[11].id) == []


def test_marking_read_touches_only_the_users_own_unread_notifications(
    user_data: UserData, clock: FakeClock
) -> None:
    ada, bob = user_data.new_user(), user_data.new_user()
    notes = user_data.notifications
    a1, a2 = (notes.add(ada, "k", m) for m in ("a1", "a2"))
    b1 = notes.add(bob, "k", "b1")
    assert notes.unread_count(ada) == 2

    assert notes.mark_read(ada, [a1.id, b1.id, 10_000]) == 1
    assert notes.mark_read(ada, [a1.id]) == 0
    assert notes.mark_read(ada, []) == 0

    read_at = {n.id: n.read_at for n in notes.for_user(ada)}
    assert read_at == {a1.id: clock.now_ms, a2.id: None}
    assert notes.for_user(bob)[0].read_at is None
    assert notes.unread_count(ada) == 1
    assert notes.unread_count(bob) == 1
    assert notes.mark_read(ada, [a2.id], at=7) == 1
    assert notes.for_user(ada)[0].read_at == 7
    assert notes.unread_count(ada) == 0
