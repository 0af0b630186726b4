"""``open_storage``: the one way in, and the :class:`Storage` that groups the stores."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Final

from sqlalchemy import Engine

from storage._account_tokens import AccountTokenStore
from storage._accounts import RefreshTokenStore, UserStore
from storage._alerts import AlertStore
from storage._charging import ReservationStore, SessionStore
from storage._engine import Clock, Database, system_clock_ms, translated_errors
from storage._evse_state import EvseStateStore, StatusEventStore
from storage._files import private_dir, private_file
from storage._id_tags import IdTagStore
from storage._leases import LeaseStore
from storage._login_failures import LoginFailureStore
from storage._metrics import MetricsStore
from storage._migrations import current_version, migrate
from storage._notifications import NotificationStore
from storage._reports import OperatorReports
from storage._sites import SiteStore
from storage._stations import StationCredentialStore

__all__ = ["DB_FILENAME", "Storage", "open_storage", "sqlite_url"]

DB_FILENAME: Final = "smartcharge.db"


def sqlite_url(data_dir: Path) -> str:
    """The default database: ``<data_dir>/smartcharge.db``. The directory is created (or
    tightened) 0700 and the file 0600 before SQLite opens it: it holds password hashes, and
    SQLite gives its WAL files the mode of the database file (``storage._files``)."""
    private_dir(data_dir)
    path = data_dir / DB_FILENAME
    private_file(path, create=True)
    for suffix in ("-wal", "-shm"):
        private_file(path.with_name(path.name + suffix))
    return f"sqlite:///{path.resolve()}"


class Storage:
    """The stores of one database, migrated to the latest schema.

    Safe to share between threads: each thread uses its own connection (see
    ``storage._engine``), so never hand a connection or an open :meth:`transaction` to another
    thread. Every store method is its own transaction unless called inside :meth:`transaction`.
    """

    def __init__(self, database: Database, clock_ms: Clock = system_clock_ms) -> None:
        self._database = database
        with translated_errors():
            migrate(database.engine, clock_ms)
        self.users = UserStore(database, clock_ms)
        self.refresh_tokens = RefreshTokenStore(database, clock_ms)
        self.account_tokens = AccountTokenStore(database, clock_ms)
        self.login_failures = LoginFailureStore(database, clock_ms)
        self.sessions = SessionStore(database, clock_ms)
        self.reservations = ReservationStore(database, clock_ms)
        self.notifications = NotificationStore(database, clock_ms)
        self.evse_states = EvseStateStore(database, clock_ms)
        self.status_events = StatusEventStore(database, clock_ms)
        self.metrics = MetricsStore(database, clock_ms)
        self.station_credentials = StationCredentialStore(database, clock_ms)
        self.leases = LeaseStore(database, clock_ms)
        self.reports = OperatorReports(database, clock_ms)
        self.sites = SiteStore(database, clock_ms)
        self.alerts = AlertStore(database, clock_ms)
        self.id_tags = IdTagStore(database, clock_ms)

    @property
    def dialect(self) -> str:
        """``"sqlite"`` or ``"postgresql"``."""
        return self._database.dialect

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine, for diagnostics and tests; write only through the stores."""
        return self._database.engine

    def schema_version(self) -> int:
        with self._database.read() as conn:
            return current_version(conn)

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Group this thread's store calls into one transaction: all of them or none.

        Do not catch a storage error inside and carry on: on PostgreSQL the transaction is
        aborted after a failed statement.
        """
        with self._database.write():
            yield

    def close(self) -> None:
        """Release every connection. Other threads must have finished their calls."""
        self._database.close()

    def __enter__(self) -> Storage:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def open_storage(
    url: str | None = None, *, data_dir: Path, clock_ms: Clock = system_clock_ms
) -> Storage:
    """Open (and migrate) the database at ``url``; ``None`` means SQLite in ``data_dir``.

    ``url`` is any SQLAlchemy URL for SQLite (a file) or PostgreSQL: ``postgresql://`` uses
    psycopg 3. The caller decides where it comes from (``SMARTCHARGE_DB_URL`` is not read
    here). In-memory SQLite is refused: each thread would see its own empty database.

    Raises :class:`StorageUnavailableError` if the database cannot be reached and
    :class:`MigrationError` if its schema is newer than this code.
    """
    if url is None:
        url = sqlite_url(data_dir)
    if url.startswith("sqlite") and url.split("?")[0] in ("sqlite://", "sqlite:///:memory:"):
        raise ValueError("in-memory SQLite is per thread: use a file (url=None uses data_dir)")
    database = Database(url)
    try:
        return Storage(database, clock_ms)
    except BaseException:
        database.close()
        raise
