"""Persistence of what the actors decide: users, refresh tokens, charging sessions,
reservations and notifications, on SQLite (default) or PostgreSQL, through ``dataset``.

::

    storage = open_storage(url, data_dir=data_dir)   # url=None: <data_dir>/smartcharge.db
    user = storage.users.create("a@example.org", password_hash, Role.DRIVER)
    storage.sessions.by_driver(user.id)
    storage.close()

- **Times** are ``int`` epoch milliseconds, UTC, everywhere (columns are ``BIGINT``): SQLite
  drivers return naive datetimes, integers lose nothing. Defaults come from an injected
  ``clock_ms``.
- **Threads**: a :class:`Storage` may be used from any number of threads; each thread gets its
  own connection, which goes back to the pool, from the same thread, at the end of each call.
- **Schema**: created and upgraded by versioned migrations (``storage._migrations``) when the
  database is opened; ``dataset`` only reads and writes rows, it never adds columns.
- **Errors**: everything raised on purpose is a :class:`StorageError`.
- **Ownership**: each table has one writer (the actor that decides); the rest only reads.
"""

from storage._account_tokens import AccountTokenStore, LinkPurpose
from storage._accounts import RefreshTokenStore, UserStore, normalize_email
from storage._alerts import SEVERITIES, Alert, AlertStore, Severity
from storage._charging import ReservationStore, SessionStore
from storage._engine import Clock, system_clock_ms
from storage._evse_state import EvseStateStore, StatusEventStore
from storage._files import private_dir, private_file
from storage._id_tags import (
    ID_TAG_PATTERN,
    MAX_TAGS_PER_DRIVER,
    IdTag,
    IdTagStore,
    TagHolder,
    valid_id_tag,
)
from storage._leases import Lease, LeaseKeeper, LeaseStore
from storage._metrics import (
    DayTotal,
    EvseSample,
    EvseUtilisation,
    MetricsStore,
    MetricsSummary,
    StationTotal,
)
from storage._migrations import LATEST_VERSION
from storage._notifications import NotificationStore
from storage._records import (
    EvseStateRow,
    Notification,
    RefreshToken,
    Reservation,
    ReservationOutcome,
    Role,
    Session,
    StatusEvent,
    User,
)
from storage._reports import Cursor, DriverAccount, OperatorReports, SessionRecord
from storage._sites import SiteRecord, SiteStore
from storage._stations import StationCredential, StationCredentialStore
from storage._storage import DB_FILENAME, Storage, open_storage, sqlite_url
from storage.errors import (
    ConstraintError,
    DuplicateError,
    LeaseHeldError,
    LeaseLostError,
    MigrationError,
    StorageError,
    StorageUnavailableError,
)

__all__ = [
    "DB_FILENAME",
    "ID_TAG_PATTERN",
    "LATEST_VERSION",
    "MAX_TAGS_PER_DRIVER",
    "SEVERITIES",
    "AccountTokenStore",
    "Alert",
    "AlertStore",
    "Clock",
    "ConstraintError",
    "Cursor",
    "DayTotal",
    "DriverAccount",
    "DuplicateError",
    "EvseSample",
    "EvseStateRow",
    "EvseStateStore",
    "EvseUtilisation",
    "IdTag",
    "IdTagStore",
    "Lease",
    "LeaseHeldError",
    "LeaseKeeper",
    "LeaseLostError",
    "LeaseStore",
    "LinkPurpose",
    "MetricsStore",
    "MetricsSummary",
    "MigrationError",
    "Notification",
    "NotificationStore",
    "OperatorReports",
    "RefreshToken",
    "RefreshTokenStore",
    "Reservation",
    "ReservationOutcome",
    "ReservationStore",
    "Role",
    "Session",
    "SessionRecord",
    "SessionStore",
    "Severity",
    "SiteRecord",
    "SiteStore",
    "StationCredential",
    "StationCredentialStore",
    "StationTotal",
    "StatusEvent",
    "StatusEventStore",
    "Storage",
    "StorageError",
    "StorageUnavailableError",
    "TagHolder",
    "User",
    "UserStore",
    "normalize_email",
    "open_storage",
    "private_dir",
    "private_file",
    "sqlite_url",
    "system_clock_ms",
    "valid_id_tag",
]
