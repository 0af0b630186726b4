"""``gateway.ocpp_auth.TagAuthority`` and ``storage.IdTagStore`` on the test's database: what
a badge start may do to another driver's reservation, two registrations of one tag at once
(``docs/ocpp.md``, "RFID cards")."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ocpp.v16.enums import AuthorizationStatus
from sqlalchemy import text

from gateway.ocpp_auth import TagAuthority
from storage import IdTagStore
from storage.errors import DuplicateError
from tests import db
from tests.db import open_test_storage

pytestmark = [pytest.mark.needs_db, pytest.mark.timeout(60)]

db_url = db.db_url  # the fixture: SQLite, or a fresh PostgreSQL database (SMARTCHARGE_DB_URL)

NOW_MS = 1_800_000_000_000


def test_a_connector_reserved_in_storage_starts_by_badge_only_for_the_holder(
    tmp_path: Path, db_url: str | None
) -> None:
    """The translator's view of the connector may have lost the reservation (a charger that
    reports Preparing when a cable is plugged in, a translator restarted): the reservation the
    CSMS holds still decides."""
    storage = open_test_storage(tmp_path / "csms", db_url)
    try:
        frank = storage.users.create("frank@example.com", "hash", "driver")
        grace = storage.users.create("grace@example.com", "hash", "driver")
        storage.id_tags.register(frank.id, "FRANK-CARD")
        storage.id_tags.register(grace.id, "GRACE-CARD")
        held = storage.reservations.create(frank.id, "cp-1.1", expires_at=NOW_MS + 600_000)
        tags = TagAuthority(storage, threading.Lock(), clock_ms=lambda: NOW_MS)

        refused = tags.admit(
            "grace-card", session_id="ocpp-cp-1-1", evse_id="cp-1.1", reservation_id=None
        )
        assert refused.status is AuthorizationStatus.invalid
        assert storage.id_tags.start_driver("ocpp-cp-1-1") is None

        elsewhere = tags.admit(
            "GRACE-CARD", session_id="ocpp-cp-1-2", evse_id="cp-1.2", reservation_id=None
        )
        assert elsewhere.status is AuthorizationStatus.accepted

        own = tags.admit(
            "FRANK-CARD", session_id="ocpp-cp-1-3", evse_id="cp-1.1", reservation_id=None
        )
        assert (own.status, own.driver_id) == (AuthorizationStatus.accepted, frank.id)
        assert storage.id_tags.start_driver("ocpp-cp-1-3") == frank.id
        assert held.driver_id == frank.id

        # once the reservation has expired, anyone's card starts there
        later = TagAuthority(storage, threading.Lock(), clock_ms=lambda: NOW_MS + 600_000)
        expired = later.admit(
            "grace-card", session_id="ocpp-cp-1-4", evse_id="cp-1.1", reservation_id=None
        )
        assert expired.status is AuthorizationStatus.accepted
    finally:
        storage.close()


class _RacedDb:
    """The store's database, whose write transactions look a tag up as if before another
    request committed it (what two gateway workers on PostgreSQL may do): the look-up misses,
    the insert then meets the other's row."""

    def __init__(self, db: Any) -> None:
        self._db = db

    def __getattr__(self, name: str) -> Any:
        return getattr(self._db, name)

    @contextlib.contextmanager
    def write(self) -> Iterator[Any]:
        with self._db.write() as conn:
            yield _RacedConn(conn)


class _RacedConn:
    def __init__(self, conn: Any) -> None:
        self._conn = conn

    def execute(self, statement: Any, params: Any = None) -> Any:
        if str(statement).startswith("SELECT id_tag") and "tag_key = :k" in str(statement):
            statement = text("SELECT id_tag, driver_id, created_at FROM id_tags WHERE 1 = 0")
        return self._conn.execute(statement, params)


@pytest.mark.parametrize("same_driver", [True, False], ids=["same-driver", "another-driver"])
def test_two_registrations_of_one_tag_at_once(
    tmp_path: Path, db_url: str | None, same_driver: bool
) -> None:
    """The second to insert finds the first's row: the same driver's is theirs (not "another
    account's"), another's is a DuplicateError (409), never a stray error."""
    storage = open_test_storage(tmp_path / "csms", db_url)
    try:
        store = storage.id_tags
        racer = "ivan" if same_driver else "judy"
        store.register(racer, "IVAN-CARD")  # the other request, committed first
        raced = IdTagStore(_RacedDb(store._db), lambda: NOW_MS)  # type: ignore[arg-type]
        if same_driver:
            tag = raced.register("ivan", "ivan-card")
            assert (tag.id_tag, tag.driver_id) == ("IVAN-CARD", "ivan")
        else:
            with pytest.raises(DuplicateError):
                raced.register("ivan", "ivan-card")
        assert [t.driver_id for t in store.list()] == [racer]
    finally:
        storage.close()
