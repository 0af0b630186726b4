"""What the operator pages read: sessions by any filter, driver accounts with their session
counts, and the status changes of one station. Read-only, newest first, paged by keyset.

A page continues from a :class:`Cursor` (the last row's time and id), never an offset, so rows
added while an operator pages back neither repeat nor vanish. Every filter is a bound
parameter, and every query is bounded by ``limit``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, and_, func, or_, select

from storage._charging import _session
from storage._engine import Clock, Database
from storage._evse_state import _status_event
from storage._records import Role, Session, StatusEvent

__all__ = ["Cursor", "DriverAccount", "OperatorReports", "SessionRecord"]

DELETED_EMAIL_SUFFIX = "@deleted.invalid"
"""How :meth:`storage.UserStore.delete` scrubs an email: such accounts are not listed."""


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where a page ends: the last row's time (epoch ms) and id; the next page is older."""

    at: int
    id: str

    def __str__(self) -> str:
        return f"{self.at}:{self.id}"

    @classmethod
    def parse(cls, text: str) -> Cursor:
        """``"<epoch ms>:<id>"``; raises ``ValueError`` for anything else."""
        at, sep, row_id = text.partition(":")
        if not sep or not at.isdigit() or len(at) > 15 or not row_id or len(row_id) > 200:
            raise ValueError("a cursor is <epoch ms>:<id>, as a page's 'next' gives it")
        return cls(int(at), row_id)


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionRecord:
    """A session with its driver's email (None: started at the station or the dashboard,
    or the account was deleted)."""

    session: Session
    driver_email: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class DriverAccount:
    id: str
    email: str
    created_at: int
    confirmed_at: int | None
    disabled_at: int | None
    sessions: int


def _older_than(at: Any, row_id: Any, cursor: Cursor | None) -> list[ColumnElement[bool]]:
    if cursor is None:
        return []
    return [or_(at < cursor.at, and_(at == cursor.at, row_id < cursor.id))]


class OperatorReports:
    """Queries over ``sessions``, ``users`` and ``status_events`` for operators."""

    def __init__(self, db: Database, clock_ms: Clock) -> None:
        self._db = db
        self._sessions = db.table("sessions").table
        self._users = db.table("users").table
        self._status = db.table("status_events").table

    def sessions(
        self,
        *,
        station_id: str | None = None,
        evse_id: str | None = None,
        driver_id: str | None = None,
        is_open: bool | None = None,
        started_from: int | None = None,
        started_before: int | None = None,
        before: Cursor | None = None,
        limit: int = 50,
    ) -> list[SessionRecord]:
        """Sessions newest first (by ``started_at``, then id), each filter optional:
        ``started_from`` inclusive, ``started_before`` exclusive, ``before`` a page's end."""
        s, u = self._sessions, self._users
        where = _older_than(s.c.started_at, s.c.id, before)
        for column, value in (
            (s.c.station_id, station_id),
            (s.c.evse_id, evse_id),
            (s.c.driver_id, driver_id),
        ):
            if value is not None:
                where.append(column == value)
        if is_open is not None:
            where.append(s.c.ended_at.is_(None) if is_open else s.c.ended_at.is_not(None))
        if started_from is not None:
            where.append(s.c.started_at >= started_from)
        if started_before is not None:
            where.append(s.c.started_at < started_before)
        stmt = (
            select(s, u.c.email.label("driver_email"))
            .select_from(s.outerjoin(u, u.c.id == s.c.driver_id))
            .where(*where)
            .order_by(s.c.started_at.desc(), s.c.id.desc())
            .limit(limit)
        )
        with self._db.read() as conn:
            rows = [dict(row._mapping) for row in conn.execute(stmt)]
        return [
            SessionRecord(session=_session(row), driver_email=_live_email(row["driver_email"]))
            for row in rows
        ]

    def drivers(
        self,
        *,
        query: str | None = None,
        user_id: str | None = None,
        before: Cursor | None = None,
        limit: int = 50,
    ) -> list[DriverAccount]:
        """Driver accounts (not deleted ones), newest first; ``query``: part of the email,
        ``user_id``: that account only."""
        s, u = self._sessions, self._users
        count = (select(func.count(s.c.id)).where(s.c.driver_id == u.c.id).scalar_subquery()).label(
            "session_count"
        )
        where = [
            u.c.role == str(Role.DRIVER),
            ~u.c.email.endswith(DELETED_EMAIL_SUFFIX, autoescape=True),
            *_older_than(u.c.created_at, u.c.id, before),
        ]
        if user_id is not None:
            where.append(u.c.id == user_id)
        if query:
            where.append(u.c.email.contains(query.strip().lower(), autoescape=True))
        stmt = (
            select(u.c.id, u.c.email, u.c.created_at, u.c.confirmed_at, u.c.disabled_at, count)
            .where(*where)
            .order_by(u.c.created_at.desc(), u.c.id.desc())
            .limit(limit)
        )
        with self._db.read() as conn:
            rows = list(conn.execute(stmt))
        return [
            DriverAccount(
                id=row.id,
                email=row.email,
                created_at=int(row.created_at),
                confirmed_at=None if row.confirmed_at is None else int(row.confirmed_at),
                disabled_at=None if row.disabled_at is None else int(row.disabled_at),
                sessions=int(row.session_count or 0),
            )
            for row in rows
        ]

    def status_events(self, evse_ids: Iterable[str], limit: int = 50) -> list[StatusEvent]:
        """The newest status changes of these EVSEs (a station's), newest first: one query
        per EVSE on its ``(evse_id, ts)`` index, so the log's size does not matter."""
        t = self._status
        found: list[StatusEvent] = []
        with self._db.read() as conn:
            for evse_id in sorted(set(evse_ids)):
                stmt = (
                    select(t)
                    .where(t.c.evse_id == evse_id)
                    .order_by(t.c.ts.desc(), t.c.id.desc())
                    .limit(limit)
                )
                found += [_status_event(dict(row._mapping)) for row in conn.execute(stmt)]
        found.sort(key=lambda e: (e.ts, e.id), reverse=True)
        return found[:limit]


def _live_email(email: str | None) -> str | None:
    if email is None or email.endswith(DELETED_EMAIL_SUFFIX):
        return None
    return email
