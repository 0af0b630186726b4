"""Every EVSE's last known state and the log of its status changes (written by the CSMS's
state recorder, read back when the CSMS starts)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy.dialects import postgresql, sqlite

from storage._engine import Clock, Database
from storage._records import EvseStateRow, StatusEvent

__all__ = ["EvseStateStore", "StatusEventStore"]


def _json(value: Mapping[str, Any] | None) -> str | None:
    if value is None:
        return None
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def _evse_state(row: Mapping[str, Any]) -> EvseStateRow:
    station = row["station"]
    return EvseStateRow(
        evse_id=row["evse_id"],
        station_id=row["station_id"],
        state=json.loads(row["state"]),
        station=None if station is None else json.loads(station),
        updated_at=row["updated_at"],
    )


class EvseStateStore:
    """The ``evse_state`` table: one row per EVSE, replaced on every write (an upsert).

    ``state`` and ``station`` are JSON objects the caller defines (the CSMS's ``EvseState``
    and its station's descriptor); the store only keeps them. The upsert is built once:
    building it (its ``excluded`` columns) cost more CPU than running it, on every flush.
    """

    def __init__(self, db: Database, clock_ms: Clock) -> None:
        self._db = db
        self._clock_ms = clock_ms
        self._table = db.table("evse_state")
        t = self._table.table
        dialect = postgresql if db.dialect == "postgresql" else sqlite
        insert = dialect.insert(t)
        self._upsert = insert.on_conflict_do_update(
            index_elements=[t.c.evse_id],
            set_={
                "station_id": insert.excluded.station_id,
                "state": insert.excluded.state,
                "station": insert.excluded.station,
                "updated_at": insert.excluded.updated_at,
            },
        )

    def put_many(self, states: Iterable[EvseStateRow]) -> int:
        """Insert or replace these rows in one transaction (one statement); return how many."""
        rows = [
            {
                "evse_id": s.evse_id,
                "station_id": s.station_id,
                "state": _json(s.state),
                "station": _json(s.station),
                "updated_at": s.updated_at,
            }
            for s in states
        ]
        if not rows:
            return 0
        with self._db.write() as conn:
            conn.execute(self._upsert, rows)
        return len(rows)

    def remove(self, evse_ids: Iterable[str]) -> int:
        """Forget these EVSEs (retired by their station); return how many rows went."""
        ids = list(evse_ids)
        if not ids:
            return 0
        t = self._table.table
        with self._db.write() as conn:
            result = conn.execute(t.delete().where(t.c.evse_id.in_(ids)))
        return int(result.rowcount or 0)

    def all(self) -> list[EvseStateRow]:
        """Every EVSE's row, by EVSE id."""
        with self._db.read():
            rows = list(self._table.find(order_by=["evse_id"]))
        return [_evse_state(row) for row in rows]


def _status_event(row: Mapping[str, Any]) -> StatusEvent:
    return StatusEvent(
        id=int(row["id"]),
        evse_id=row["evse_id"],
        ts=row["ts"],
        from_status=row["from_status"],
        to_status=row["to_status"],
        session_id=row["session_id"],
    )


class StatusEventStore:
    """The ``status_events`` table: append-only, one row per status change of an EVSE."""

    def __init__(self, db: Database, clock_ms: Clock) -> None:
        self._db = db
        self._clock_ms = clock_ms
        self._table = db.table("status_events")
        self._insert = self._table.table.insert()  # one executemany per flush

    def add_many(self, events: Iterable[StatusEvent]) -> int:
        """Append these events (their ``id`` is ignored: the database numbers them)."""
        rows = [
            {
                "evse_id": e.evse_id,
                "ts": e.ts,
                "from_status": e.from_status,
                "to_status": e.to_status,
                "session_id": e.session_id,
            }
            for e in events
        ]
        if rows:
            with self._db.write() as conn:
                conn.execute(self._insert, rows)
        return len(rows)

    def for_evse(
        self, evse_id: str, since: int | None = None, limit: int = 100
    ) -> list[StatusEvent]:
        """The EVSE's status changes at or after ``since`` (epoch ms), oldest first."""
        filters: dict[str, Any] = {"evse_id": evse_id}
        if since is not None:
            filters["ts"] = {"gte": since}
        with self._db.read():
            rows = list(self._table.find(order_by=["ts", "id"], _limit=limit, **filters))
        return [_status_event(row) for row in rows]
