"""The database a test runs on: SQLite in ``tmp_path`` by default, or, when
``SMARTCHARGE_DB_URL`` is set (CI's second pass), a fresh PostgreSQL database per test on
that server, dropped afterwards.

``database_for_test(data_dir)``
    a context manager yielding the url to give ``open_storage`` or ``smartcharge csms
    --db-url``: ``None`` for SQLite (the default file in the data dir) or the fresh
    database's url. Usable from fixtures of any scope.
``db_url``
    the fixture form (function scope), for tests that only need the url.
``open_test_storage(data_dir, url)``
    ``open_storage`` on that database.
``child_env(url)``
    the environment for a ``smartcharge`` subprocess: ``SMARTCHARGE_DB_URL`` is the test's
    own database (or removed, for SQLite), never the server's shared one.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final

import psycopg
import pytest
from psycopg import sql
from sqlalchemy.engine import make_url

from storage import Storage, open_storage

DB_URL_ENV: Final = "SMARTCHARGE_DB_URL"


def server_url() -> str | None:
    """The PostgreSQL server the suite runs on, or ``None`` for SQLite."""
    return os.environ.get(DB_URL_ENV) or None


def _libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _admin(url: str) -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(_libpq(url), autocommit=True, connect_timeout=5)


@contextmanager
def fresh_postgresql_database(admin_url: str) -> Iterator[str]:
    """A new database ``sc_test_<uuid>`` on the server of ``admin_url``, dropped at exit."""
    name = f"sc_test_{uuid.uuid4().hex}"
    with _admin(admin_url) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with _admin(admin_url) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = %s AND pid <> pg_backend_pid()",
                (name,),
            )
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))


@contextmanager
def database_for_test(data_dir: Path) -> Iterator[str | None]:
    """``None`` (SQLite in ``data_dir``) or a fresh PostgreSQL database's url."""
    admin_url = server_url()
    if admin_url is None:
        data_dir.mkdir(parents=True, exist_ok=True)
        yield None
        return
    with fresh_postgresql_database(admin_url) as url:
        yield url


def open_test_storage(data_dir: Path, url: str | None) -> Storage:
    data_dir.mkdir(parents=True, exist_ok=True)
    return open_storage(url, data_dir=data_dir)


def child_env(url: str | None, base: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ if base is None else base)
    env.pop(DB_URL_ENV, None)
    if url is not None:
        env[DB_URL_ENV] = url
    return env


@pytest.fixture
def db_url(tmp_path: Path) -> Iterator[str | None]:
    with database_for_test(tmp_path / "csms") as url:
        yield url
