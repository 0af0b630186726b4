"""The operators' alert log: one row per alert (a station offline or back online, an EVSE
faulted, an actor restarted, a reservation interrupted, ...), acknowledged by an operator.

Times are epoch milliseconds on the CSMS's clock (never a station's). Ids increase with
insertion, so "newest first" is ``ORDER BY id DESC`` and a page continues ``before`` the last
id it showed. One writer adds rows (the node's alert log, ``actors.alert_log``); an ack is one
``UPDATE ... WHERE acked_at IS NULL``, so acking twice (from two gateways at once) keeps the
first ack.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any, Final, Literal

from sqlalchemy import delete, func, select, update

from storage._engine import Clock, Database

__all__ = ["SEVERITIES", "Alert", "AlertStore", "Severity"]

Severity = Literal["bad", "warn", "info", "good"]
SEVERITIES: Final[tuple[Severity, ...]] = ("bad", "warn", "info", "good")

LIVENESS_KINDS: Final = ("station_offline", "station_online")


@dataclass(frozen=True, slots=True, kw_only=True)
class Alert:
    """One alert, as the API and the live ``alert`` event show it."""

    id: int
    at: int
    kind: str
    severity: Severity
    station_id: str | None
    evse_id: str | None
    message: str
    acked_by: str | None = None
    acked_at: int | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _alert(row: Any) -> Alert:
    return Alert(
        id=int(row.id),
        at=int(row.at),
        kind=row.kind,
        severity=row.severity,
        station_id=row.station_id,
        evse_id=row.evse_id,
        message=row.message,
        acked_by=row.acked_by,
        acked_at=None if row.acked_at is None else int(row.acked_at),
    )


class AlertStore:
    """The ``alerts`` table."""

    def __init__(self, db: Database, clock_ms: Clock) -> None:
        self._db = db
        self._clock_ms = clock_ms
        self._t = db.table("alerts").table

    def add(
        self,
        kind: str,
        severity: Severity,
        message: str,
        *,
        at: int,
        station_id: str | None = None,
        evse_id: str | None = None,
    ) -> Alert:
        """Store one alert; its id is the next one."""
        if severity not in SEVERITIES:
            raise ValueError(f"unknown severity {severity!r}")
        values = {
            "at": at,
            "kind": kind,
            "severity": severity,
            "station_id": station_id,
            "evse_id": evse_id,
            "message": message,
        }
        with self._db.write() as conn:
            key = conn.execute(self._t.insert(), values).inserted_primary_key
            assert key is not None, "an INSERT of one row has a primary key"
        return Alert(id=int(key[0]), **values)  # type: ignore[arg-type]

    def get(self, alert_id: int) -> Alert | None:
        with self._db.read() as conn:
            row = conn.execute(select(self._t).where(self._t.c.id == alert_id)).first()
        return None if row is None else _alert(row)

    def page(
        self,
        *,
        limit: int = 50,
        before: int | None = None,
        severities: Iterable[str] = (),
        station_id: str | None = None,
        unacked: bool = False,
    ) -> list[Alert]:
        """Newest first: at most ``limit`` alerts with an id below ``before``, of one of
        ``severities`` (all if empty), of ``station_id``, only the unacknowledged ones."""
        t = self._t
        where = []
        if before is not None:
            where.append(t.c.id < before)
        wanted = sorted(set(severities))
        if wanted:
            where.append(t.c.severity.in_(wanted))
        if station_id is not None:
            where.append(t.c.station_id == station_id)
        if unacked:
            where.append(t.c.acked_at.is_(None))
        stmt = select(t).where(*where).order_by(t.c.id.desc()).limit(limit)
        with self._db.read() as conn:
            return [_alert(row) for row in conn.execute(stmt)]

    def ack(self, alert_id: int, by: str, at: int | None = None) -> Alert | None:
        """Acknowledge ``alert_id`` by ``by`` at ``at`` (default: now); an alert acked before
        keeps its first ack. ``None`` for an unknown id."""
        t = self._t
        stmt = (
            update(t)
            .where(t.c.id == alert_id, t.c.acked_at.is_(None))
            .values(acked_by=by, acked_at=self._clock_ms() if at is None else at)
        )
        with self._db.write() as conn:
            conn.execute(stmt)
            row = conn.execute(select(t).where(t.c.id == alert_id)).first()
        return None if row is None else _alert(row)

    def prune(self, *, before: int, keep: int) -> int:
        """Delete the alerts stamped before ``before`` and, of the rest, all but the newest
        ``keep`` (a station flapping for weeks must not grow the table without bound); the
        number deleted."""
        t = self._t
        with self._db.write() as conn:
            gone = conn.execute(delete(t).where(t.c.at < before)).rowcount or 0
            oldest_kept = conn.execute(
                select(t.c.id).order_by(t.c.id.desc()).offset(keep).limit(1)
            ).scalar()
            if oldest_kept is not None:
                gone += conn.execute(delete(t).where(t.c.id <= oldest_kept)).rowcount or 0
        return int(gone)

    def last_liveness(self) -> dict[str, str]:
        """Station id -> the kind of its newest ``station_offline``/``station_online`` alert:
        whether the log last said the station was offline or back online."""
        t = self._t
        newest = (
            select(func.max(t.c.id))
            .where(t.c.kind.in_(LIVENESS_KINDS), t.c.station_id.is_not(None))
            .group_by(t.c.station_id)
        )
        stmt = select(t.c.station_id, t.c.kind).where(t.c.id.in_(newest))
        with self._db.read() as conn:
            return {str(sid): str(kind) for sid, kind in conn.execute(stmt)}
