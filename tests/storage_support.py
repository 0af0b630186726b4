"""Shared by the storage contract tests (tests/test_storage_*.py): a driver to own things, and
work run on many threads released together."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from storage import Role, Storage, User

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


# -- charging sessions -----------------------------------------------------------------------


def open_session(store: Storage, session_id: str = "s1", **overrides: Any) -> Any:
    fields: dict[str, Any] = {"evse_id": "st1-1", "station_id": "st1", "start_energy_wh": 1000.0}
    fields.update(overrides)
    return store.sessions.open(session_id, **fields)
