"""``gateway.ocpp_auth.TagAuthority`` on the test's database: what a badge start may do to
another driver's reservation (``docs/ocpp.md``, "RFID cards")."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from ocpp.v16.enums import AuthorizationStatus

from gateway.ocpp_auth import TagAuthority
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
