"""The engine under the stores: one ``dataset`` database, a connection per thread, transactions.

Threads
-------
``dataset`` gives every thread its own connection (checked out of the SQLAlchemy pool on the
thread's first statement). Each store method runs inside :meth:`Database.read` or
:meth:`Database.write`; when the outermost of those ends, the thread's connection is committed
(or rolled back) and returned to the pool **by the same thread**. So a connection never crosses
threads, and any number of threads may call the stores at once; at most ``pool_size +
max_overflow`` (5 + 10 by default) of them hold a connection at the same moment, the others
wait for one (outside ``dataset``'s lock: ``_DatasetDatabase.executable``).

SQLite
------
Every new connection sets ``busy_timeout=5000``, ``synchronous=NORMAL``, ``foreign_keys=ON``
and makes sure the file is in WAL mode (``_ensure_wal``). pysqlite's own transaction handling
is switched off and we emit ``BEGIN`` ourselves (the SQLAlchemy recipe): otherwise DDL would
run outside the migration's transaction, and a read would not be isolated. Writes start with
``BEGIN IMMEDIATE``: the writer waits for the lock up front (within the busy timeout) instead
of failing when it upgrades a read lock.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Final

import dataset
from sqlalchemy import Connection, Engine, event
from sqlalchemy.exc import IntegrityError, InterfaceError, OperationalError

from storage.errors import ConstraintError, DuplicateError, StorageUnavailableError

__all__ = ["Clock", "Database", "system_clock_ms", "translated_errors"]

Clock = Callable[[], int]
"""Returns the time as epoch milliseconds, UTC."""

log = logging.getLogger(__name__)

BUSY_TIMEOUT_MS: Final = 5000
SQLITE_PRAGMAS: Final = (
    f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}",
    "PRAGMA synchronous=NORMAL",
    "PRAGMA foreign_keys=ON",
)
BEGIN_OPTION: Final = "smartcharge_sqlite_begin"
"""Execution option naming the ``BEGIN`` statement an SQLite transaction starts with."""


def system_clock_ms() -> int:
    return time.time_ns() // 1_000_000


class _DatasetDatabase(dataset.Database):
    @property
    def executable(self) -> Connection:
        """This thread's connection, checked out of the pool **outside** ``dataset``'s lock.

        ``dataset`` checks the connection out while holding its process-wide lock, and it
        takes the same lock to give a connection back at the end of a transaction. With more
        threads than the pool has connections, a thread waiting for one (up to the pool's
        30 s timeout) so kept every holder from giving theirs back: every storage call in
        the process stalled for 30 s (seen: 200 concurrent starts on a running CSMS). Only
        this thread ever reads or writes its own entry of ``connections``.
        """
        tid = threading.get_ident()
        connection = self.connections.get(tid)
        if connection is None:
            if self.engine is None:
                raise RuntimeError("Database is closed")
            connection = self.engine.connect()  # may wait for a free connection: lock-free
            with self.lock:
                self.connections[tid] = connection
        return connection

    def _release_connection(self) -> None:
        with self.lock:
            connection = self.connections.pop(threading.get_ident(), None)
        if connection is not None:
            connection.close()  # back to the pool, outside the lock

    def _flush_tables(self) -> None:
        """Keep the reflected tables after a rollback.

        ``dataset`` forgets every reflected table on rollback, in case the rollback undid a
        ``CREATE TABLE``. Our schema only changes in migrations, and forgetting races with other
        threads using the same table objects (a query could mix two reflections of a table).
        """


def _sqlite_on_connect(dbapi_connection: sqlite3.Connection, _record: object) -> None:
    for pragma in SQLITE_PRAGMAS:
        dbapi_connection.execute(pragma)
    _ensure_wal(dbapi_connection)
    dbapi_connection.isolation_level = None  # we emit BEGIN ourselves (_sqlite_begin)


def _ensure_wal(dbapi_connection: sqlite3.Connection) -> None:
    """Switch the file to WAL (a persistent property of the file; a no-op once done).

    When two connections switch a new file at the same moment, SQLite answers one of them
    ``database is locked`` at once, without waiting for the busy timeout (its deadlock
    avoidance), so we retry within that timeout ourselves.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            (mode,) = dbapi_connection.execute("PRAGMA journal_mode=WAL").fetchone()
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.005)
            continue
        if str(mode).lower() != "wal":
            log.warning(
                "SQLite refused WAL mode (journal_mode=%s); writers will block readers", mode
            )
        return


def _sqlite_begin(connection: Connection) -> None:
    connection.exec_driver_sql(connection.get_execution_options().get(BEGIN_OPTION, "BEGIN"))


def _is_unique_violation(exc: IntegrityError) -> bool:
    sqlstate = getattr(exc.orig, "sqlstate", None)  # psycopg 3
    if sqlstate is not None:
        return bool(sqlstate == "23505")
    return "UNIQUE constraint failed" in str(exc.orig)  # sqlite3


@contextmanager
def translated_errors() -> Iterator[None]:
    """Turn the driver's errors that callers can act on into :class:`StorageError` subclasses."""
    try:
        yield
    except IntegrityError as exc:
        if _is_unique_violation(exc):
            raise DuplicateError(str(exc.orig)) from exc
        raise ConstraintError(str(exc.orig)) from exc
    except (OperationalError, InterfaceError) as exc:
        raise StorageUnavailableError(str(exc.orig)) from exc


class Database:
    """One database URL: the engine, the ``dataset`` tables and the transaction scopes."""

    def __init__(self, url: str) -> None:
        self._db = _DatasetDatabase(
            url,
            ensure_schema=False,  # the schema is ours (migrations), never guessed from rows
            sqlite_wal_mode=False,  # WAL: our own connect hook (_ensure_wal)
        )
        assert self._db.engine is not None  # None only after close()
        self.engine: Engine = self._db.engine
        self.dialect: str = self.engine.dialect.name
        if self.dialect == "sqlite":
            event.listen(self.engine, "connect", _sqlite_on_connect)
            event.listen(self.engine, "begin", _sqlite_begin)
        self._tables: dict[str, dataset.Table] = {}
        self._tables_lock = threading.Lock()

    def table(self, name: str) -> dataset.Table:
        """The ``dataset`` table ``name``, reflected once (call after the migrations ran)."""
        with self._tables_lock:
            table = self._tables.get(name)
            if table is None:
                table = self._db.load_table(name)
                with self.read():
                    table.table  # noqa: B018 - reflect now, on this thread, not in a race later
                self._tables[name] = table
            return table

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A transaction on this thread's connection, for reads (nested scopes join the outer)."""
        with translated_errors(), self._db:
            yield self._db.executable

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A transaction on this thread's connection that will write (``BEGIN IMMEDIATE``)."""
        with translated_errors():
            if self.dialect == "sqlite" and not self._db.in_transaction:
                self._db.executable.execution_options(**{BEGIN_OPTION: "BEGIN IMMEDIATE"})
            with self._db:
                yield self._db.executable

    def close(self) -> None:
        """Close the connections still held and dispose of the pool. Call once, at the end."""
        self._db.close()
