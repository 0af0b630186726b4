"""RFID idTags registered to driver accounts, and the sessions charge points started on them.

``id_tags(tag_key, id_tag, driver_id, created_at)``: a tag belongs to one account; OCPP 1.6
compares idTags case-insensitively (``CiString20Type``), so the key is the upper-case
spelling and the tag as the driver typed it is kept for display. A driver holds at most
:data:`MAX_TAGS_PER_DRIVER`. Written by the gateway (the driver's ``/me/tags``, operators),
read by the OCPP translator (``gateway.ocpp_auth``), which writes ``id_tag_starts``: which
driver a session started by badging at a charger belongs to, stored *before* the CSMS hears
of the session, so the CSMS attributes it like an app start (``docs/ocpp.md``).
"""

from __future__ import annotations

import builtins
import re
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import text

from storage._engine import Clock, Database
from storage.errors import Conflict, DuplicateError

__all__ = [
    "ID_TAG_PATTERN",
    "MAX_TAGS_PER_DRIVER",
    "IdTag",
    "IdTagStore",
    "TagHolder",
    "tag_key",
    "valid_id_tag",
]

MAX_TAGS_PER_DRIVER: Final = 10
BADGE_STARTS_KEPT_MS: Final = 30 * 24 * 3600 * 1000
"""A badge start's row (which driver a charger's session is) is kept 30 days: the CSMS reads
it when the session opens (its row then names the driver) and after a restart."""
_TAG_LOCK_SPACE: Final = 0x5C7A  # pg_advisory_xact_lock(space, key): a key space of our own
ID_TAG_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9_:-]{0,19}$"
"""OCPP 1.6's IdToken is a ``CiString20Type``: at most 20 characters. We take letters, digits,
``_``, ``:`` and ``-`` (what RFID card numbers and chargers' keypads produce), so a tag is a
URL path segment as it is."""
_ID_TAG = re.compile(ID_TAG_PATTERN)


def valid_id_tag(value: object) -> bool:
    return isinstance(value, str) and _ID_TAG.fullmatch(value) is not None


def tag_key(id_tag: str) -> str:
    """How OCPP compares idTags: case-insensitively."""
    return id_tag.upper()


@dataclass(frozen=True, slots=True, kw_only=True)
class IdTag:
    id_tag: str
    driver_id: str
    created_at: int


@dataclass(frozen=True, slots=True, kw_only=True)
class TagHolder:
    """Whose a tag is, and whether that account may charge."""

    driver_id: str
    enabled: bool


def _tag(row: Any) -> IdTag:
    return IdTag(id_tag=row.id_tag, driver_id=row.driver_id, created_at=int(row.created_at))


class IdTagStore:
    def __init__(self, db: Database, clock_ms: Clock) -> None:
        self._db = db
        self._clock_ms = clock_ms

    def register(self, driver_id: str, id_tag: str) -> IdTag:
        """Register ``id_tag`` to the driver (again: the existing row). :class:`DuplicateError`
        if another account holds it, :class:`Conflict` if the driver holds the most allowed."""
        if not valid_id_tag(id_tag):
            raise ValueError("an idTag is 1 to 20 letters, digits, _, : or -")
        try:
            return self._register(driver_id, id_tag)
        except DuplicateError:  # registered at the same moment (another worker): whose?
            with self._db.read() as conn:
                found = conn.execute(
                    text("SELECT id_tag, driver_id, created_at FROM id_tags WHERE tag_key = :k"),
                    {"k": tag_key(id_tag)},
                ).first()
            if found is None or found.driver_id != driver_id:
                raise
            return _tag(found)

    def _register(self, driver_id: str, id_tag: str) -> IdTag:
        key = tag_key(id_tag)
        with self._db.write() as conn:
            if self._db.dialect == "postgresql":  # SQLite's BEGIN IMMEDIATE serialises already
                conn.execute(  # one registration per driver at a time: the count holds
                    text("SELECT pg_advisory_xact_lock(:space, hashtext(:d))"),
                    {"space": _TAG_LOCK_SPACE, "d": driver_id},
                )
            found = conn.execute(
                text("SELECT id_tag, driver_id, created_at FROM id_tags WHERE tag_key = :k"),
                {"k": key},
            ).first()
            if found is not None:
                if found.driver_id != driver_id:
                    raise DuplicateError("this tag is registered to another account")
                return _tag(found)
            held = conn.execute(
                text("SELECT COUNT(*) FROM id_tags WHERE driver_id = :d"), {"d": driver_id}
            ).scalar_one()
            if held >= MAX_TAGS_PER_DRIVER:
                raise Conflict(f"an account holds at most {MAX_TAGS_PER_DRIVER} tags")
            now = self._clock_ms()
            row = {"k": key, "t": id_tag, "d": driver_id, "at": now}
            conn.execute(
                text(
                    "INSERT INTO id_tags (tag_key, id_tag, driver_id, created_at)"
                    " VALUES (:k, :t, :d, :at)"
                ),
                row,
            )
        return IdTag(id_tag=id_tag, driver_id=driver_id, created_at=now)

    def of_driver(self, driver_id: str) -> builtins.list[IdTag]:
        with self._db.read() as conn:
            rows = conn.execute(
                text(
                    "SELECT id_tag, driver_id, created_at FROM id_tags WHERE driver_id = :d"
                    " ORDER BY created_at, tag_key"
                ),
                {"d": driver_id},
            ).all()
        return [_tag(row) for row in rows]

    def list(self, limit: int = 100, offset: int = 0) -> builtins.list[IdTag]:
        """Every registered tag (operators), oldest first."""
        with self._db.read() as conn:
            rows = conn.execute(
                text(
                    "SELECT id_tag, driver_id, created_at FROM id_tags"
                    " ORDER BY created_at, tag_key LIMIT :n OFFSET :o"
                ),
                {"n": limit, "o": offset},
            ).all()
        return [_tag(row) for row in rows]

    def remove(self, id_tag: str, driver_id: str | None = None) -> bool:
        """Remove a tag; with ``driver_id`` only if it is that driver's. False if none was."""
        if not valid_id_tag(id_tag):
            return False
        sql = "DELETE FROM id_tags WHERE tag_key = :k"
        params = {"k": tag_key(id_tag)}
        if driver_id is not None:
            sql += " AND driver_id = :d"
            params["d"] = driver_id
        with self._db.write() as conn:
            return bool(conn.execute(text(sql), params).rowcount == 1)

    def remove_all_of(self, driver_id: str) -> int:
        with self._db.write() as conn:
            return int(
                conn.execute(
                    text("DELETE FROM id_tags WHERE driver_id = :d"), {"d": driver_id}
                ).rowcount
            )

    def holder(self, id_tag: str) -> TagHolder | None:
        """Whose the tag is (and whether that account is enabled), or None if nobody's."""
        if not valid_id_tag(id_tag):
            return None
        with self._db.read() as conn:
            row = conn.execute(
                text(
                    "SELECT t.driver_id, u.disabled_at FROM id_tags t"
                    " LEFT JOIN users u ON u.id = t.driver_id WHERE t.tag_key = :k"
                ),
                {"k": tag_key(id_tag)},
            ).first()
        if row is None:
            return None
        # no users row: an account of an outside provider (Firebase), enabled
        return TagHolder(driver_id=row.driver_id, enabled=row.disabled_at is None)

    # ------------------------------------------------------------------ badge starts

    def record_start(
        self,
        session_id: str,
        *,
        driver_id: str,
        id_tag: str,
        evse_id: str,
        reservation_id: str | None = None,
    ) -> None:
        now = self._clock_ms()
        with self._db.write() as conn:
            conn.execute(  # kept while they matter: attribution at the session's opening
                text("DELETE FROM id_tag_starts WHERE started_at < :before"),
                {"before": now - BADGE_STARTS_KEPT_MS},
            )
            conn.execute(
                text(
                    "INSERT INTO id_tag_starts (session_id, driver_id, tag_key, evse_id,"
                    " reservation_id, started_at) VALUES (:s, :d, :k, :e, :r, :at)"
                ),
                {
                    "s": session_id,
                    "d": driver_id,
                    "k": tag_key(id_tag),
                    "e": evse_id,
                    "r": reservation_id,
                    "at": now,
                },
            )

    def start_driver(self, session_id: str) -> str | None:
        """The driver whose tag started ``session_id`` at a charger, if one did."""
        with self._db.read() as conn:
            row = conn.execute(
                text("SELECT driver_id FROM id_tag_starts WHERE session_id = :s"),
                {"s": session_id},
            ).first()
        return None if row is None else str(row.driver_id)

    def running_sessions(self, driver_id: str, since_ms: int) -> int:
        """The driver's open sessions, and badge starts since ``since_ms`` whose session the
        CSMS has not recorded yet (a start in flight)."""
        with self._db.read() as conn:
            return int(
                conn.execute(
                    text(
                        "SELECT (SELECT COUNT(*) FROM sessions WHERE driver_id = :d"
                        " AND ended_at IS NULL) + (SELECT COUNT(*) FROM id_tag_starts b"
                        " WHERE b.driver_id = :d AND b.started_at >= :since AND NOT EXISTS"
                        " (SELECT 1 FROM sessions s WHERE s.id = b.session_id))"
                    ),
                    {"d": driver_id, "since": since_ms},
                ).scalar_one()
            )
