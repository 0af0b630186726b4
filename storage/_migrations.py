"""Versioned schema migrations: ``schema_version`` plus an ordered list of migration functions.

Migration *n* (1-based) is ``MIGRATIONS[n - 1]``; it brings the schema from version ``n - 1``
to ``n`` and gets a row in ``schema_version``. A migration is frozen once released: change the
schema by appending a new function (Core DDL or ``text()``; never format values into SQL), and
never edit an old one, or databases migrated before and after the edit would differ.

:func:`migrate` applies the missing ones in **one transaction**, so a failing migration leaves
the previous version intact, and two processes opening the same database at once take turns:
PostgreSQL through a transaction-scoped advisory lock, SQLite through ``BEGIN IMMEDIATE`` (the
second waits up to the busy timeout, then finds the work done).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    Connection,
    Double,
    Engine,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Table,
    Text,
    func,
    insert,
    select,
    text,
)

from storage._engine import BEGIN_OPTION, Clock
from storage._migrations_late import epoch_ms_column as _epoch_ms
from storage._migrations_late import v10_sites, v11_alerts, v12_id_tags
from storage.errors import MigrationError

__all__ = ["LATEST_VERSION", "MIGRATIONS", "current_version", "migrate"]

Migration = Callable[[Connection], None]

ADVISORY_LOCK_KEY: Final = 0x5C_5C_0001
"""PostgreSQL advisory lock held while migrating (any constant unique to this application)."""


def _v1_users_sessions_reservations_notifications(conn: Connection) -> None:
    """The driver API: users, refresh tokens, charging sessions, reservations, notifications."""
    md = MetaData()
    Table(
        "users",
        md,
        Column("id", Text, primary_key=True),
        Column("email", Text, nullable=False, unique=True),
        Column("password_hash", Text, nullable=False),
        Column("role", Text, nullable=False),
        _epoch_ms("created_at"),
        CheckConstraint("role IN ('driver', 'operator')", name="ck_users_role"),
        Index("ix_users_created_at", "created_at"),
    )
    Table(
        "refresh_tokens",
        md,
        Column("token_hash", Text, primary_key=True),
        Column("user_id", Text, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        Column("family_id", Text, nullable=False),
        _epoch_ms("created_at"),
        _epoch_ms("expires_at"),
        _epoch_ms("used_at", nullable=True),
        _epoch_ms("revoked_at", nullable=True),
        Index("ix_refresh_tokens_family_id", "family_id"),
        Index("ix_refresh_tokens_user_id", "user_id"),
    )
    reservations = Table(
        "reservations",
        md,
        Column("id", Text, primary_key=True),
        Column("driver_id", Text, ForeignKey("users.id"), nullable=False),
        Column("evse_id", Text, nullable=False),
        _epoch_ms("created_at"),
        _epoch_ms("expires_at"),
        _epoch_ms("ended_at", nullable=True),
        Column("outcome", Text, nullable=True),
        Column("reason", Text, nullable=True),
        CheckConstraint(
            "outcome IS NULL OR outcome IN ('used', 'expired', 'cancelled', 'interrupted')",
            name="ck_reservations_outcome",
        ),
        CheckConstraint("(ended_at IS NULL) = (outcome IS NULL)", name="ck_reservations_ended"),
        Index("ix_reservations_driver_id_created_at", "driver_id", "created_at"),
    )
    active = reservations.c.ended_at.is_(None)
    Index(  # no double booking, even from two gateways at once
        "uq_reservations_active_evse_id",
        reservations.c.evse_id,
        unique=True,
        sqlite_where=active,
        postgresql_where=active,
    )
    sessions = Table(
        "sessions",
        md,
        Column("id", Text, primary_key=True),
        Column("driver_id", Text, ForeignKey("users.id"), nullable=True),
        Column("evse_id", Text, nullable=False),
        Column("station_id", Text, nullable=False),
        _epoch_ms("started_at"),
        _epoch_ms("ended_at", nullable=True),
        Column("start_energy_wh", Double, nullable=False),
        Column("energy_wh", Double, nullable=False),
        Column("peak_power_w", Double, nullable=False),
        Column("target_soc", Double, nullable=True),
        Column("end_reason", Text, nullable=True),
        Column("reservation_id", Text, ForeignKey("reservations.id"), nullable=True),
        Index("ix_sessions_driver_id_started_at", "driver_id", "started_at"),
        Index("ix_sessions_evse_id_started_at", "evse_id", "started_at"),
    )
    still_open = sessions.c.ended_at.is_(None)
    Index(  # open_for_evse, open_sessions: a small index over the open sessions only
        "ix_sessions_open_evse_id",
        sessions.c.evse_id,
        sqlite_where=still_open,
        postgresql_where=still_open,
    )
    Table(
        "notifications",
        md,
        Column(
            "id",
            BigInteger().with_variant(Integer(), "sqlite"),  # SQLite: an alias of the rowid
            primary_key=True,
            autoincrement=True,
        ),
        Column("user_id", Text, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        Column("kind", Text, nullable=False),
        Column("message", Text, nullable=False),
        Column("data", Text, nullable=False),
        _epoch_ms("created_at"),
        _epoch_ms("read_at", nullable=True),
        Index("ix_notifications_user_id_id", "user_id", "id"),
    )
    md.create_all(conn, checkfirst=False)


def _v2_evse_state_and_status_events(conn: Connection) -> None:
    """Restart with nothing lost: every EVSE's last known state (one row per EVSE, the JSON of
    the CSMS's ``EvseState`` and of its station's descriptor) and the log of status changes."""
    md = MetaData()
    Table(
        "evse_state",
        md,
        Column("evse_id", Text, primary_key=True),
        Column("station_id", Text, nullable=False),
        Column("state", Text, nullable=False),  # JSON object: every EvseState field
        Column("station", Text, nullable=True),  # JSON object: the station's last birth
        _epoch_ms("updated_at"),
    )
    Table(
        "status_events",
        md,
        Column(
            "id",
            BigInteger().with_variant(Integer(), "sqlite"),  # SQLite: an alias of the rowid
            primary_key=True,
            autoincrement=True,
        ),
        Column("evse_id", Text, nullable=False),
        _epoch_ms("ts"),
        Column("from_status", Text, nullable=True),
        Column("to_status", Text, nullable=False),
        Column("session_id", Text, nullable=True),
        Index("ix_status_events_evse_id_ts", "evse_id", "ts"),
    )
    md.create_all(conn, checkfirst=False)


def _v3_evse_samples_and_session_time_indexes(conn: Connection) -> None:
    """Metrics: the EVSE time series (``storage._metrics``), and ``started_at``/``ended_at``
    indexes on ``sessions`` so the operators' summary reads a range, not the whole table."""
    md = MetaData()
    Table(
        "evse_samples",
        md,
        Column("evse_id", Text, nullable=False),
        _epoch_ms("ts"),
        Column("power_w", Double, nullable=False),
        Column("energy_wh", Double, nullable=False),
        Column("soc", Double, nullable=True),
        Column("samples", Integer, nullable=False),  # raw samples this row stands for
        Column("resolution_ms", BigInteger, nullable=False),  # 0: raw; else its bucket
        Index("ix_evse_samples_evse_id_ts", "evse_id", "ts"),
        Index("ix_evse_samples_resolution_ms_ts", "resolution_ms", "ts"),
    )
    md.create_all(conn, checkfirst=False)
    conn.execute(text("CREATE INDEX ix_sessions_started_at ON sessions (started_at)"))
    conn.execute(text("CREATE INDEX ix_sessions_ended_at ON sessions (ended_at)"))


_EVSE_ID_TABLES: Final = ("sessions", "reservations", "status_events", "evse_samples")


def _v4_evse_ids_per_station(conn: Connection) -> None:
    """Protocol v2 names an EVSE by its station: ``st-001`` + ``1`` is ``st-001.1``.

    Every stored EVSE id becomes ``station_id.evse_id`` (its station from ``evse_state``),
    in every table that holds one. Ids already in that form are left alone; rows of EVSEs
    ``evse_state`` does not know (no station to name) keep their id."""
    known = conn.execute(text("SELECT evse_id, station_id FROM evse_state")).all()
    renames = [
        {"old": old, "new": f"{station}.{old}"}
        for old, station in known
        if not str(old).startswith(f"{station}.")
    ]
    if not renames:
        return
    conn.execute(text("UPDATE evse_state SET evse_id = :new WHERE evse_id = :old"), renames)
    for table in _EVSE_ID_TABLES:  # constants above, never input
        conn.execute(text(f"UPDATE {table} SET evse_id = :new WHERE evse_id = :old"), renames)


def _v5_station_credentials(conn: Connection) -> None:
    """Station identity on the broker: each station's MQTT password hash (``storage._stations``)."""
    md = MetaData()
    Table(
        "station_credentials",
        md,
        Column("station_id", Text, primary_key=True),
        Column("name", Text, nullable=False),
        Column("password_hash", Text, nullable=False),
        _epoch_ms("created_at"),
        _epoch_ms("revoked_at", nullable=True),
    )
    md.create_all(conn, checkfirst=False)


def _v6_leases(conn: Connection) -> None:
    """Leases with an epoch: one CSMS per partition of the stations (``storage._leases``)."""
    md = MetaData()
    Table(
        "leases",
        md,
        Column("name", Text, primary_key=True),
        Column("holder", Text, nullable=False),
        Column("epoch", BigInteger, nullable=False),
        _epoch_ms("expires_at"),
        _epoch_ms("acquired_at"),
        CheckConstraint("epoch >= 1", name="ck_leases_epoch"),
    )
    md.create_all(conn, checkfirst=False)


def _v7_user_token_version_and_disabled_at(conn: Connection) -> None:
    """Revoking an account at once: access tokens carry ``token_version``, and a write
    request whose token's version is not the user's current one is refused; disabling or
    deleting a user bumps it. ``disabled_at``: a disabled (or deleted: the row stays, with
    its email and password scrubbed, so its sessions' rows keep their driver) account."""
    conn.execute(text("ALTER TABLE users ADD COLUMN token_version INTEGER NOT NULL DEFAULT 0"))
    conn.execute(text("ALTER TABLE users ADD COLUMN disabled_at BIGINT"))


def _v8_email_confirmation_and_account_tokens(conn: Connection) -> None:
    """Mailed account links (``storage._account_tokens``): when a user confirmed the email
    address (existing users count as confirmed when they signed up), and the single-use
    tokens of the confirmation and password-reset links, stored as SHA-256 digests."""
    conn.execute(text("ALTER TABLE users ADD COLUMN confirmed_at BIGINT"))
    conn.execute(text("UPDATE users SET confirmed_at = created_at"))
    md = MetaData()
    Table("users", md, Column("id", Text, primary_key=True))  # the foreign key's target
    Table(
        "account_tokens",
        md,
        Column("token_hash", Text, primary_key=True),
        Column("user_id", Text, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        Column("purpose", Text, nullable=False),
        _epoch_ms("created_at"),
        _epoch_ms("expires_at"),
        _epoch_ms("used_at", nullable=True),
        CheckConstraint("purpose IN ('confirm', 'reset')", name="ck_account_tokens_purpose"),
        Index("ix_account_tokens_user_id", "user_id"),
    )
    md.tables["account_tokens"].create(conn, checkfirst=False)


def _v9_login_failures(conn: Connection) -> None:
    """Wrong passwords per (account, client address), shared by every gateway worker
    (``gateway.login_guard``): how many since the last success, and when the last was."""
    md = MetaData()
    Table(
        "login_failures",
        md,
        Column("account", Text, primary_key=True),
        Column("address", Text, primary_key=True),
        Column("failures", Integer, nullable=False),
        _epoch_ms("last_at"),
        Index("ix_login_failures_account_last_at", "account", "last_at"),
    )
    md.tables["login_failures"].create(conn, checkfirst=False)


MIGRATIONS: Final[tuple[Migration, ...]] = (
    _v1_users_sessions_reservations_notifications,
    _v2_evse_state_and_status_events,
    _v3_evse_samples_and_session_time_indexes,
    _v4_evse_ids_per_station,
    _v5_station_credentials,
    _v6_leases,
    _v7_user_token_version_and_disabled_at,
    _v8_email_confirmation_and_account_tokens,
    _v9_login_failures,
    v10_sites,
    v11_alerts,
    v12_id_tags,
)
LATEST_VERSION: Final = len(MIGRATIONS)

_version_md = MetaData()
schema_version = Table(
    "schema_version",
    _version_md,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("name", Text, nullable=False),
    _epoch_ms("applied_at"),
)


def current_version(conn: Connection) -> int:
    """The highest applied migration, 0 for an empty database."""
    if not conn.dialect.has_table(conn, "schema_version"):
        return 0
    return int(conn.execute(select(func.max(schema_version.c.version))).scalar() or 0)


def migrate(engine: Engine, clock_ms: Clock) -> int:
    """Apply the missing migrations in one transaction; return the schema version.

    Idempotent: on an up-to-date database it only reads ``schema_version``. Raises
    :class:`MigrationError` when the database is newer than this code.
    """
    with engine.connect() as conn:
        conn.execution_options(**{BEGIN_OPTION: "BEGIN IMMEDIATE"})  # SQLite: lock first
        with conn.begin():
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": ADVISORY_LOCK_KEY})
            schema_version.create(conn, checkfirst=True)
            version = current_version(conn)
            if version > LATEST_VERSION:
                raise MigrationError(
                    f"database schema version {version} is newer than this code's "
                    f"({LATEST_VERSION}): upgrade smartcharge"
                )
            for number in range(version + 1, LATEST_VERSION + 1):
                step = MIGRATIONS[number - 1]
                step(conn)
                conn.execute(
                    insert(schema_version).values(
                        version=number, name=step.__name__.lstrip("_"), applied_at=clock_ms()
                    )
                )
            return LATEST_VERSION
