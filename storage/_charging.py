"""Charging sessions and reservations: written by the actors that own them, read by the API."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from sqlalchemy import BindParameter, ColumnElement, bindparam, case, select, update

from storage._engine import Clock, Database
from storage._records import Reservation, ReservationOutcome, Session
from storage.errors import DuplicateError

__all__ = ["ReservationStore", "SessionStore"]


def _session(row: Mapping[str, Any]) -> Session:
    return Session(
        id=row["id"],
        driver_id=row["driver_id"],
        evse_id=row["evse_id"],
        station_id=row["station_id"],
        started_at=row["started_at"],
        ended_at=row["ended_at"],
        start_energy_wh=row["start_energy_wh"],
        energy_wh=row["energy_wh"],
        peak_power_w=row["peak_power_w"],
        target_soc=row["target_soc"],
        end_reason=row["end_reason"],
        reservation_id=row["reservation_id"],
    )


def _greatest(column: Any, value: BindParameter[Any]) -> ColumnElement[Any]:
    """``max(column, value)`` in SQL that SQLite and PostgreSQL both speak."""
    return case((column < value, value), else_=column)


class SessionStore:
    """The ``sessions`` table.

    Lifecycle: :meth:`open` → :meth:`update_progress`\\* → :meth:`close`. Every step is
    idempotent, so replaying the station's messages (MQTT QoS 1 delivers at least once) or a
    restarted recorder writing again changes nothing. Several sessions may be open on one EVSE
    (a stop missed while the CSMS was down): :meth:`open_for_evse` returns the newest, and
    :meth:`open_sessions` lists them all for reconciliation at start.

    The writes of a running session (one open, a few progress updates, one close per
    session) use statements built once, with bound parameters: building a ``CASE`` update
    for every call cost more CPU than executing it (~0.65 ms against ~0.25 ms).
    """

    def __init__(self, db: Database, clock_ms: Clock) -> None:
        self._db = db
        self._clock_ms = clock_ms
        self._table = db.table("sessions")
        t = self._table.table
        energy = bindparam("energy", type_=t.c.energy_wh.type)
        power = bindparam("power", type_=t.c.peak_power_w.type)
        still_open = (t.c.id == bindparam("session_id", type_=t.c.id.type), t.c.ended_at.is_(None))
        self._select_one = select(t).where(t.c.id == bindparam("session_id", type_=t.c.id.type))
        self._insert = t.insert()
        self._raise_progress = (
            update(t)
            .where(*still_open)
            .values(
                energy_wh=_greatest(t.c.energy_wh, energy),
                peak_power_w=_greatest(t.c.peak_power_w, power),
            )
        )
        self._close = (
            update(t)
            .where(*still_open)
            .values(  # a bound parameter may not take the name of a column it sets
                ended_at=bindparam("at", type_=t.c.ended_at.type),
                end_reason=bindparam("reason", type_=t.c.end_reason.type),
                energy_wh=_greatest(t.c.energy_wh, energy),
            )
        )

    def open(
        self,
        session_id: str,
        *,
        evse_id: str,
        station_id: str,
        started_at: int | None = None,
        start_energy_wh: float = 0.0,
        driver_id: str | None = None,
        target_soc: float | None = None,
        reservation_id: str | None = None,
    ) -> Session:
        """Record a session; for a known ``session_id``, return it unchanged (first open wins)."""
        session = Session(
            id=session_id,
            driver_id=driver_id,
            evse_id=evse_id,
            station_id=station_id,
            started_at=self._clock_ms() if started_at is None else started_at,
            start_energy_wh=float(start_energy_wh),
            energy_wh=0.0,
            peak_power_w=0.0,
            target_soc=target_soc,
            reservation_id=reservation_id,
        )
        try:
            with self._db.write() as conn:
                existing = conn.execute(self._select_one, {"session_id": session_id}).first()
                if existing is not None:
                    return _session(dict(existing._mapping))
                conn.execute(
                    self._insert,
                    {
                        "id": session.id,
                        "driver_id": session.driver_id,
                        "evse_id": session.evse_id,
                        "station_id": session.station_id,
                        "started_at": session.started_at,
                        "start_energy_wh": session.start_energy_wh,
                        "energy_wh": session.energy_wh,
                        "peak_power_w": session.peak_power_w,
                        "target_soc": session.target_soc,
                        "reservation_id": session.reservation_id,
                    },
                )
            return session
        except DuplicateError:  # PostgreSQL: another thread inserted it since our read
            raced = self.get(session_id)
            if raced is None:
                raise
            return raced

    def update_progress(self, session_id: str, energy_wh: float, power_w: float) -> bool:
        """Raise the session's energy and peak power if these are higher (they never go down).

        Returns False, changing nothing, for an unknown or closed session.
        """
        values = {"session_id": session_id, "energy": float(energy_wh), "power": float(power_w)}
        with self._db.write() as conn:
            return bool(conn.execute(self._raise_progress, values).rowcount == 1)

    def close(self, session_id: str, ended_at: int, energy_wh: float, end_reason: str) -> bool:
        """End an open session (its energy still only grows). True only for the call that
        closed it: closing a closed or unknown session changes nothing and returns False."""
        values = {
            "session_id": session_id,
            "at": ended_at,
            "reason": end_reason,
            "energy": float(energy_wh),
        }
        with self._db.write() as conn:
            return bool(conn.execute(self._close, values).rowcount == 1)

    def get(self, session_id: str) -> Session | None:
        with self._db.read():
            row = self._table.find_one(id=session_id)
        return None if row is None else _session(row)

    def open_for_evse(self, evse_id: str) -> Session | None:
        """The newest open session on the EVSE, if any."""
        with self._db.read():
            rows = list(
                self._table.find(
                    evse_id=evse_id, ended_at=None, order_by=["-started_at", "-id"], _limit=1
                )
            )
        return _session(rows[0]) if rows else None

    def by_driver(
        self, driver_id: str, limit: int = 50, before: int | None = None
    ) -> list[Session]:
        """The driver's sessions, newest first; ``before`` (a ``started_at``) pages back."""
        filters: dict[str, Any] = {"driver_id": driver_id}
        if before is not None:
            filters["started_at"] = {"lt": before}
        with self._db.read():
            rows = list(self._table.find(order_by=["-started_at", "-id"], _limit=limit, **filters))
        return [_session(row) for row in rows]

    def open_sessions(self) -> list[Session]:
        """Every session not closed yet, oldest first."""
        with self._db.read():
            rows = list(self._table.find(ended_at=None, order_by=["started_at", "id"]))
        return [_session(row) for row in rows]


def _reservation(row: Mapping[str, Any]) -> Reservation:
    outcome = row["outcome"]
    return Reservation(
        id=row["id"],
        driver_id=row["driver_id"],
        evse_id=row["evse_id"],
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        ended_at=row["ended_at"],
        outcome=None if outcome is None else ReservationOutcome(outcome),
        reason=row["reason"],
    )


class ReservationStore:
    """The ``reservations`` table. Active means not finished: at most one per EVSE (a unique
    index, so two gateways cannot double-book). Expiry is decided by the reservation countdown,
    which calls :meth:`finish` with ``"expired"``; the store does not compare clocks."""

    def __init__(self, db: Database, clock_ms: Clock) -> None:
        self._db = db
        self._clock_ms = clock_ms
        self._table = db.table("reservations")

    def create(
        self,
        driver_id: str,
        evse_id: str,
        expires_at: int,
        *,
        reservation_id: str | None = None,
        created_at: int | None = None,
    ) -> Reservation:
        """Raises :class:`DuplicateError` if the EVSE (or the id) already has an active one."""
        reservation = Reservation(
            id=uuid.uuid4().hex if reservation_id is None else reservation_id,
            driver_id=driver_id,
            evse_id=evse_id,
            created_at=self._clock_ms() if created_at is None else created_at,
            expires_at=expires_at,
        )
        with self._db.write():
            self._table.insert(
                {
                    "id": reservation.id,
                    "driver_id": reservation.driver_id,
                    "evse_id": reservation.evse_id,
                    "created_at": reservation.created_at,
                    "expires_at": reservation.expires_at,
                }
            )
        return reservation

    def get(self, reservation_id: str) -> Reservation | None:
        with self._db.read():
            row = self._table.find_one(id=reservation_id)
        return None if row is None else _reservation(row)

    def active_for_evse(self, evse_id: str) -> Reservation | None:
        with self._db.read():
            row = self._table.find_one(evse_id=evse_id, ended_at=None)
        return None if row is None else _reservation(row)

    def active_for_driver(self, driver_id: str) -> Reservation | None:
        """The driver's newest active reservation."""
        with self._db.read():
            rows = list(
                self._table.find(
                    driver_id=driver_id, ended_at=None, order_by=["-created_at", "-id"], _limit=1
                )
            )
        return _reservation(rows[0]) if rows else None

    def active(self) -> list[Reservation]:
        """Every active reservation, oldest first (the countdowns to resume after a restart)."""
        with self._db.read():
            rows = list(self._table.find(ended_at=None, order_by=["created_at", "id"]))
        return [_reservation(row) for row in rows]

    def finish(
        self,
        reservation_id: str,
        at: int,
        outcome: ReservationOutcome | str,
        reason: str | None = None,
    ) -> bool:
        """End an active reservation; True only for the one call that ended it."""
        t = self._table.table
        stmt = (
            update(t)
            .where(t.c.id == reservation_id, t.c.ended_at.is_(None))
            .values(ended_at=at, outcome=str(ReservationOutcome(outcome)), reason=reason)
        )
        with self._db.write() as conn:
            return bool(conn.execute(stmt).rowcount == 1)
