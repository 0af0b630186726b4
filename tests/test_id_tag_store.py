"""``storage._id_tags`` on SQLite and PostgreSQL: an account's tag limit holds under
concurrent registrations, and badge starts are not kept forever."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from storage import MAX_TAGS_PER_DRIVER
from storage._id_tags import BADGE_STARTS_KEPT_MS
from storage._storage import open_storage
from storage.errors import Conflict
from tests import db

pytestmark = [pytest.mark.needs_db, pytest.mark.timeout(60)]

db_url = db.db_url  # the fixture: SQLite, or a fresh PostgreSQL database (SMARTCHARGE_DB_URL)


def test_concurrent_registrations_never_take_an_account_past_its_tag_limit(
    tmp_path: Path, db_url: str | None
) -> None:
    (tmp_path / "csms").mkdir(exist_ok=True)
    storage = open_storage(db_url, data_dir=tmp_path / "csms")
    driver = storage.users.create("many@example.com", "hash", "driver")
    tries = MAX_TAGS_PER_DRIVER * 3
    gate = threading.Barrier(8)

    def register(n: int) -> str:
        if n < 8:
            gate.wait(timeout=10)  # the first eight at once
        try:
            storage.id_tags.register(driver.id, f"CARD{n:04d}")
        except Conflict:
            return "refused"
        return "registered"

    with ThreadPoolExecutor(max_workers=8) as pool:
        outcomes = list(pool.map(register, range(tries)))
    assert outcomes.count("registered") == MAX_TAGS_PER_DRIVER
    assert len(storage.id_tags.of_driver(driver.id)) == MAX_TAGS_PER_DRIVER


def test_badge_starts_older_than_their_keeping_time_go_when_a_new_one_comes(
    tmp_path: Path, db_url: str | None
) -> None:
    now = [10 * BADGE_STARTS_KEPT_MS]
    (tmp_path / "csms").mkdir(exist_ok=True)
    storage = open_storage(db_url, data_dir=tmp_path / "csms", clock_ms=lambda: now[0])
    driver = storage.users.create("badge@example.com", "hash", "driver")
    storage.id_tags.record_start("old-session", driver_id=driver.id, id_tag="A1", evse_id="s.1")
    now[0] += BADGE_STARTS_KEPT_MS - 1
    storage.id_tags.record_start("mid-session", driver_id=driver.id, id_tag="A1", evse_id="s.1")
    assert storage.id_tags.start_driver("old-session") == driver.id, "not yet too old"
    now[0] += 2
    storage.id_tags.record_start("new-session", driver_id=driver.id, id_tag="A1", evse_id="s.1")
    assert storage.id_tags.start_driver("old-session") is None
    assert storage.id_tags.start_driver("mid-session") == driver.id
    assert storage.id_tags.start_driver("new-session") == driver.id
