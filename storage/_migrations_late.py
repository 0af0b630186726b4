"""Migrations 10 on (``storage._migrations`` lists them all, in order): the same rules,
kept apart so no module grows past 400 lines."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    Connection,
    Double,
    Index,
    Integer,
    MetaData,
    Table,
    Text,
)

__all__ = ["epoch_ms_column", "v10_sites", "v11_alerts", "v12_id_tags"]


def epoch_ms_column(name: str, *, nullable: bool = False) -> Column[int]:
    return Column(name, BigInteger, nullable=nullable)


_epoch_ms = epoch_ms_column


def v10_sites(conn: Connection) -> None:
    """Smart charging (``storage._sites``): sites with their power limit and schedule (and
    what the node's site actor last decided, ``live``), the stations behind each (a
    station in at most one site), and the departure times drivers set on their sessions."""
    md = MetaData()
    Table(
        "sites",
        md,
        Column("id", Text, primary_key=True),
        Column("name", Text, nullable=False),
        Column("limit_w", Double, nullable=False),
        Column("schedule", Text, nullable=False),
        Column("timezone", Text, nullable=False),
        Column("evse_limits", Text, nullable=False),
        _epoch_ms("updated_at"),
        Column("live", Text, nullable=True),
        _epoch_ms("live_at", nullable=True),
    )
    Table(
        "site_stations",
        md,
        Column("station_id", Text, primary_key=True),
        Column("site_id", Text, nullable=False),
        Index("ix_site_stations_site_id", "site_id"),
    )
    Table(
        "departures",
        md,
        Column("session_id", Text, primary_key=True),
        _epoch_ms("departure_at"),
        _epoch_ms("set_at"),
    )
    md.create_all(conn, checkfirst=False)


def v11_alerts(conn: Connection) -> None:
    """The operators' alert log (``storage._alerts``): one row per alert, on the CSMS's
    clock, and who acknowledged it when."""
    md = MetaData()
    Table(
        "alerts",
        md,
        Column(
            "id",
            BigInteger().with_variant(Integer(), "sqlite"),  # SQLite: an alias of the rowid
            primary_key=True,
            autoincrement=True,
        ),
        _epoch_ms("at"),
        Column("kind", Text, nullable=False),
        Column("severity", Text, nullable=False),
        Column("station_id", Text, nullable=True),
        Column("evse_id", Text, nullable=True),
        Column("message", Text, nullable=False),
        Column("acked_by", Text, nullable=True),
        _epoch_ms("acked_at", nullable=True),
        CheckConstraint("severity IN ('bad', 'warn', 'info', 'good')", name="ck_alerts_severity"),
        CheckConstraint("(acked_at IS NULL) = (acked_by IS NULL)", name="ck_alerts_acked"),
        Index("ix_alerts_station_id_id", "station_id", "id"),
        Index("ix_alerts_severity_id", "severity", "id"),
    )
    md.create_all(conn, checkfirst=False)


def v12_id_tags(conn: Connection) -> None:
    """RFID idTags registered to driver accounts (``storage._id_tags``): one row per tag, keyed
    by its upper-case spelling (OCPP compares idTags case-insensitively), and the sessions a
    charge point started on such a tag (the OCPP translator writes the driver there before
    the CSMS hears of the session, so the CSMS attributes it)."""
    md = MetaData()
    Table(
        "id_tags",
        md,
        Column("tag_key", Text, primary_key=True),
        Column("id_tag", Text, nullable=False),
        Column("driver_id", Text, nullable=False),
        _epoch_ms("created_at"),
        Index("ix_id_tags_driver_id", "driver_id"),
    )
    Table(
        "id_tag_starts",
        md,
        Column("session_id", Text, primary_key=True),
        Column("driver_id", Text, nullable=False),
        Column("tag_key", Text, nullable=False),
        Column("evse_id", Text, nullable=False),
        Column("reservation_id", Text, nullable=True),
        _epoch_ms("started_at"),
        Index("ix_id_tag_starts_driver_id_started_at", "driver_id", "started_at"),
    )
    md.create_all(conn, checkfirst=False)
