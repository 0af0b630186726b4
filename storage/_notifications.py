"""A user's notifications: what happened to their sessions and reservations, kept for the app."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import update

from storage._engine import Clock, Database
from storage._records import Notification

__all__ = ["NotificationStore"]


def _notification(row: Mapping[str, Any]) -> Notification:
    return Notification(
        id=int(row["id"]),
        user_id=row["user_id"],
        kind=row["kind"],
        message=row["message"],
        data=json.loads(row["data"]),
        created_at=row["created_at"],
        read_at=row["read_at"],
    )


class NotificationStore:
    """The ``notifications`` table. Ids increase with insertion, so a client polls with
    ``after_id`` = the highest id it has seen. ``data`` is a JSON object stored as text."""

    def __init__(self, db: Database, clock_ms: Clock) -> None:
        self._db = db
        self._clock_ms = clock_ms
        self._table = db.table("notifications")
        self._insert = self._table.table.insert()  # built once: two per charging session

    def add(
        self,
        user_id: str,
        kind: str,
        message: str,
        data: Mapping[str, Any] | None = None,
        *,
        at: int | None = None,
    ) -> Notification:
        """Store a notification; ``data`` must be JSON-serializable (raises ``TypeError``)."""
        payload = dict(data or {})
        created_at = self._clock_ms() if at is None else at
        with self._db.write() as conn:
            result = conn.execute(
                self._insert,
                {
                    "user_id": user_id,
                    "kind": kind,
                    "message": message,
                    "data": json.dumps(payload, separators=(",", ":"), sort_keys=True),
                    "created_at": created_at,
                },
            )
            key = result.inserted_primary_key
            assert key is not None, "an INSERT of one row has a primary key"
            new_id = key[0]
        return Notification(
            id=int(new_id),
            user_id=user_id,
            kind=kind,
            message=message,
            data=payload,
            created_at=created_at,
        )

    def for_user(
        self, user_id: str, limit: int = 50, after_id: int | None = None
    ) -> list[Notification]:
        """Newest first; with ``after_id`` only those newer than it."""
        filters: dict[str, Any] = {"user_id": user_id}
        if after_id is not None:
            filters["id"] = {"gt": after_id}
        with self._db.read():
            rows = list(self._table.find(order_by=["-id"], _limit=limit, **filters))
        return [_notification(row) for row in rows]

    def unread_count(self, user_id: str) -> int:
        with self._db.read():
            return int(self._table.count(user_id=user_id, read_at=None))

    def mark_read(self, user_id: str, ids: Iterable[int], at: int | None = None) -> int:
        """Mark the user's own unread notifications among ``ids`` read; return how many.
        Ids of other users' notifications are ignored."""
        wanted = sorted({int(i) for i in ids})
        if not wanted:
            return 0
        t = self._table.table
        stmt = (
            update(t)
            .where(t.c.user_id == user_id, t.c.id.in_(wanted), t.c.read_at.is_(None))
            .values(read_at=self._clock_ms() if at is None else at)
        )
        with self._db.write() as conn:
            return int(conn.execute(stmt).rowcount)
