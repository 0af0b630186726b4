"""More threads than the connection pool holds: the waiters wait, the holders go on.

``dataset`` checks a thread's connection out of the pool while holding its process-wide lock,
and takes that lock again to give the connection back. A thread waiting for a free connection
so stopped every holder from giving theirs back, for the pool's 30 s time-out: every storage
call in the process stalled (seen as a 30 s HTTP read during 200 concurrent starts).
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from tests import db
from tests.db import open_test_storage

pytestmark = [pytest.mark.needs_db, pytest.mark.timeout(90)]

db_url = db.db_url

WAIT_S = 10.0  # far below the pool's 30 s time-out


def test_a_thread_waiting_for_a_connection_does_not_stop_the_holders_giving_theirs_back(
    tmp_path: Path, db_url: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = open_test_storage(tmp_path, db_url)
    database = storage._database
    pool = database.engine.pool
    capacity = pool.size() + pool._max_overflow  # type: ignore[attr-defined]  # QueuePool's limit

    holding = threading.Semaphore(0)
    give_back = threading.Event()
    waiter_connecting = threading.Event()
    finished: list[str] = []
    real_connect = database.engine.connect

    def connect() -> object:
        if threading.current_thread().name == "waiter":
            waiter_connecting.set()
        return real_connect()

    monkeypatch.setattr(database.engine, "connect", connect)

    def hold() -> None:
        with database.read() as connection:
            connection.exec_driver_sql("SELECT 1")
            holding.release()
            give_back.wait(WAIT_S)
        finished.append(threading.current_thread().name)

    def wait_for_one() -> None:
        with database.read() as connection:
            connection.exec_driver_sql("SELECT 1")
        finished.append(threading.current_thread().name)

    holders = [threading.Thread(target=hold, name=f"holder-{i}") for i in range(capacity)]
    for thread in holders:
        thread.start()
    for _ in holders:
        assert holding.acquire(timeout=WAIT_S), "a holder never got its connection"
    waiter = threading.Thread(target=wait_for_one, name="waiter")
    waiter.start()
    assert waiter_connecting.wait(WAIT_S)  # the pool is empty: the waiter now waits in connect()
    give_back.set()

    for thread in [*holders, waiter]:
        thread.join(WAIT_S)
    try:
        assert sorted(finished) == sorted(t.name for t in [*holders, waiter])
    finally:
        give_back.set()
        for thread in [*holders, waiter]:
            thread.join(40)
        storage.close()
