"""Fixtures for the storage contract tests: every test runs once per backend.

``backend``
    ``"sqlite"`` (a file in ``tmp_path``, always) and ``"postgresql"``: a fresh database
    ``sc_test_<uuid>`` per test on the server at ``SMARTCHARGE_TEST_PG_URL`` (default
    ``postgresql://postgres@127.0.0.1:5432/postgres``), dropped afterwards. An unreachable
    server skips the PostgreSQL cases (``SMARTCHARGE_REQUIRE_ALL=1``, as in CI, fails them).
``clock``
    a :class:`FakeClock` (epoch ms), injected into every storage opened here.
``open_store``
    ``open_store() -> Storage`` on the test's database; may be called again (reopen, a second
    process); everything opened is closed at teardown, before the database is dropped.
``store``
    one opened :class:`storage.Storage`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.engine import make_url

from storage import Storage, open_storage
from tests.db import fresh_postgresql_database

PG_URL_ENV = "SMARTCHARGE_TEST_PG_URL"
DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z

OpenStore = Callable[[], Storage]


class FakeClock:
    """Epoch milliseconds that move only when told to."""

    def __init__(self, now_ms: int = START_MS) -> None:
        self.now_ms = now_ms

    def __call__(self) -> int:
        return self.now_ms

    def advance(self, ms: int) -> int:
        self.now_ms += ms
        return self.now_ms


def _libpq_url(url: str, database: str | None = None) -> str:
    """``url`` as psycopg wants it (no ``+driver``), optionally for another database."""
    parsed = make_url(url).set(drivername="postgresql")
    if database is not None:
        parsed = parsed.set(database=database)
    return parsed.render_as_string(hide_password=False)


@cache
def _pg_admin_url() -> tuple[str | None, str]:
    """``(admin url, "")`` or ``(None, why not)``; cached: one connection attempt per run."""
    url = os.environ.get(PG_URL_ENV) or DEFAULT_PG_URL
    try:
        with psycopg.connect(_libpq_url(url), connect_timeout=3):
            return url, ""
    except psycopg.Error as exc:
        shown = make_url(url).render_as_string(hide_password=True)
        return None, f"PostgreSQL unreachable at {shown} ({exc}); start it or set {PG_URL_ENV}"


@pytest.fixture
def pg_database_url() -> Iterator[str]:
    """The url of a new, empty PostgreSQL database, dropped after the test."""
    admin_url, why_not = _pg_admin_url()
    if admin_url is None:
        pytest.skip(why_not)
    with fresh_postgresql_database(admin_url) as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def database_url(backend: str, request: pytest.FixtureRequest) -> str | None:
    """None for SQLite (the default file in the data dir), else a fresh PostgreSQL database."""
    if backend == "sqlite":
        return None
    return str(request.getfixturevalue("pg_database_url"))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def open_store(database_url: str | None, data_dir: Path, clock: FakeClock) -> Iterator[OpenStore]:
    opened: list[Storage] = []

    def open_one() -> Storage:
        storage = open_storage(database_url, data_dir=data_dir, clock_ms=clock)
        opened.append(storage)
        return storage

    yield open_one
    for storage in reversed(opened):
        storage.close()


@pytest.fixture
def store(open_store: OpenStore) -> Storage:
    return open_store()
