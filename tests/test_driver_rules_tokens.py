"""A deleted or disabled account's tokens stop working at once, with nothing half-written
(issue 12, point 3): write requests and refreshes check the account's token version; a
deleted account's row stays, so its running session is still recorded."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from gateway import admin
from tests import api_fixtures, db
from tests.api_fixtures import EVSE_IDS, PASSWORD, Running, next_event
from tests.db import open_test_storage
from tests.driver_client import wait_until
from tests.security_support import reason_of

running = api_fixtures.running
db_url = db.db_url  # the fixture: SQLite, or a fresh PostgreSQL database (SMARTCHARGE_DB_URL)

pytestmark = [pytest.mark.needs_db, pytest.mark.timeout(120)]

EVSE = EVSE_IDS[0]


def _register(running: Running, email: str) -> tuple[str, str, str]:
    """(access token, refresh token, user id)."""
    result = running.call(
        "POST", "/api/v1/auth/register", body={"email": email, "password": PASSWORD}
    )
    assert result.status_code == 201, result.json
    token = result.json["access_token"]
    return token, result.json["refresh_token"], running.auth.verify(token).user_id


@pytest.mark.integration
def test_a_user_row_deleted_under_a_live_token_starts_nothing(running: Running) -> None:
    """What an attacker found: the row removed by hand, the token still started a session
    (the car charged, and the session row failed on its foreign key)."""
    mallory, _, mallory_id = _register(running, "mallory@example.com")
    with running.storage.engine.begin() as conn:
        conn.execute(text("DELETE FROM users WHERE id = :id"), {"id": mallory_id})

    started = running.call("POST", f"/api/v1/evses/{EVSE}/start", mallory)

    assert started.status_code == 401, started.json
    assert "disabled or deleted" in reason_of(started)
    assert running.system.owners.sessions_of(mallory_id) == []  # never sent to a station
    assert running.watcher.state(EVSE).session_id is None


@pytest.mark.integration
def test_a_disabled_drivers_tokens_stop_writing_and_refreshing_at_once(running: Running) -> None:
    alice, refresh, alice_id = _register(running, "alice@example.com")
    assert running.storage.users.disable(alice_id)

    for method, path in (
        ("POST", f"/api/v1/evses/{EVSE}/start"),
        ("POST", f"/api/v1/evses/{EVSE}/reservation"),
        ("DELETE", f"/api/v1/evses/{EVSE}/reservation"),
    ):
        refused = running.call(method, path, alice)
        assert refused.status_code == 401, (path, refused.json)
    again = running.call("POST", "/api/v1/auth/refresh", body={"refresh_token": refresh})
    assert again.status_code == 401, again.json
    login = running.call(
        "POST", "/api/v1/auth/login", body={"email": "alice@example.com", "password": PASSWORD}
    )
    assert login.status_code == 401, login.json
    assert running.system.owners.sessions_of(alice_id) == []
    assert running.system.charging.reservation(EVSE) is None
    # Enabled again, the account logs in anew; the old token stays dead (its version).
    assert running.storage.users.enable(alice_id)
    fresh = running.call(
        "POST", "/api/v1/auth/login", body={"email": "alice@example.com", "password": PASSWORD}
    )
    assert fresh.status_code == 200, fresh.json
    assert running.call("POST", f"/api/v1/evses/{EVSE}/reservation", alice).status_code == 401
    mine = running.call("POST", f"/api/v1/evses/{EVSE}/reservation", fresh.json["access_token"])
    assert mine.status_code == 201, mine.json


@pytest.mark.integration
def test_deleting_a_driver_whose_session_runs_keeps_the_session_recorded(
    running: Running,
) -> None:
    alice, _, alice_id = _register(running, "alice@example.com")
    operator = running.operator()
    live = running.live(alice_id)
    started = running.call("POST", f"/api/v1/evses/{EVSE}/start", alice, {"target_soc": 100})
    assert started.status_code == 201, started.json
    session_id = started.json["session_id"]
    assert next_event(live, "notification").data["kind"] == "session_started"  # row written

    assert running.storage.users.delete(alice_id)

    assert running.call("POST", f"/api/v1/evses/{EVSE}/stop", alice).status_code == 401
    stopped = running.call("POST", f"/api/v1/evses/{EVSE}/stop", operator)
    assert stopped.status_code == 200, stopped.json

    def ended() -> bool:
        row = running.storage.sessions.get(session_id)
        return row is not None and row.ended_at is not None

    wait_until(ended, "the deleted driver's session row to be closed", timeout=20)
    row = running.storage.sessions.get(session_id)
    assert row is not None
    assert row.driver_id == alice_id
    assert row.energy_wh >= 0
    # The email is free again: a new account, not the deleted one.
    _, _, new_id = _register(running, "alice@example.com")
    assert new_id != alice_id


def test_the_admin_commands_disable_enable_and_delete_through_the_same_rule(
    tmp_path: Path, db_url: str | None
) -> None:
    data_dir = tmp_path / "csms"
    storage = open_test_storage(data_dir, db_url)
    try:
        user = storage.users.create("bob@example.com", "hash", "driver")
        storage.refresh_tokens.add("digest", user.id, "family", expires_at=2**40)
        where = ["--data-dir", str(data_dir), *(["--db-url", db_url] if db_url else [])]

        assert admin.main(["disable-user", "bob@example.com", *where]) == 0
        assert storage.users.token_version(user.id) is None
        token = storage.refresh_tokens.get("digest")
        assert token is not None
        assert token.revoked_at is not None
        assert admin.main(["disable-user", "bob@example.com", *where]) == 1
        assert admin.main(["enable-user", "bob@example.com", *where]) == 0
        assert storage.users.token_version(user.id) == 1  # tokens from before stay dead
        assert admin.main(["delete-user", "bob@example.com", *where]) == 0
        assert storage.users.by_email("bob@example.com") is None
        deleted = storage.users.get(user.id)
        assert deleted is not None  # the row stays for its sessions' foreign keys
        assert deleted.disabled_at is not None
        assert storage.users.token_version(user.id) is None
        assert admin.main(["enable-user", deleted.email, *where]) == 1
        assert admin.main(["delete-user", "nobody@example.com", *where]) == 1
    finally:
        storage.close()
