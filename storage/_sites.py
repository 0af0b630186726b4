"""Sites for smart charging: a grid connection's power limit and the stations behind it.

``sites(id, name, limit_w, schedule, timezone, evse_limits, updated_at)``: ``schedule`` is
JSON ``[[start_minute, limit_w], ...]`` (minutes after local midnight in ``timezone``),
``evse_limits`` JSON ``{evse_id: [min_w, max_w]}``, ``live`` JSON what the node's site actor
last decided (written at most once a second); ``site_stations(station_id, site_id)``
puts each station in at most one site; ``departures(session_id, departure_at)`` is when a
driver said they leave (the allocation's departure weights). The CSMS node reads them all
every second (``actors.site_router``): a few rows, and whichever process changes a site (a
gateway worker, ``smartcharge admin``), the node follows.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import text

from storage._engine import Clock, Database
from storage.errors import NotFound

__all__ = ["SiteRecord", "SiteStore"]


@dataclass(frozen=True, slots=True, kw_only=True)
class SiteRecord:
    id: str
    name: str
    limit_w: float
    schedule: tuple[tuple[int, float], ...] = ()
    timezone: str = "UTC"
    evse_limits: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    station_ids: tuple[str, ...] = ()
    updated_at: int = 0
    live: Mapping[str, Any] | None = None
    """What the node's site actor last decided (limit, allocated, measured, EVSE limits)."""
    live_at: int | None = None


def _record(row: Any, stations: Sequence[str]) -> SiteRecord:
    return SiteRecord(
        id=row.id,
        name=row.name,
        limit_w=float(row.limit_w),
        schedule=tuple((int(m), float(w)) for m, w in json.loads(row.schedule or "[]")),
        timezone=row.timezone,
        evse_limits={
            k: (float(v[0]), float(v[1])) for k, v in json.loads(row.evse_limits or "{}").items()
        },
        station_ids=tuple(sorted(stations)),
        updated_at=int(row.updated_at),
        live=json.loads(row.live) if getattr(row, "live", None) else None,
        live_at=None if getattr(row, "live_at", None) is None else int(row.live_at),
    )


class SiteStore:
    def __init__(self, db: Database, clock_ms: Clock) -> None:
        self._db = db
        self._clock_ms = clock_ms

    def all(self, *, live: bool = True) -> list[SiteRecord]:
        """Every site; ``live=False`` leaves out what the node decided (its JSON holds every
        EVSE's limit and 15 minutes of history: the node's once-a-second read needs neither)."""
        columns = "*" if live else "id, name, limit_w, schedule, timezone, evse_limits, updated_at"
        with self._db.read() as conn:
            rows = conn.execute(text(f"SELECT {columns} FROM sites ORDER BY id")).all()
            members = conn.execute(text("SELECT station_id, site_id FROM site_stations")).all()
        by_site: dict[str, list[str]] = {}
        for member in members:
            by_site.setdefault(member.site_id, []).append(member.station_id)
        return [_record(row, by_site.get(row.id, [])) for row in rows]

    def get(self, site_id: str) -> SiteRecord | None:
        """One site (with what the node decided), read alone."""
        with self._db.read() as conn:
            row = conn.execute(text("SELECT * FROM sites WHERE id = :id"), {"id": site_id}).first()
            if row is None:
                return None
            members = conn.execute(
                text("SELECT station_id FROM site_stations WHERE site_id = :id"),
                {"id": site_id},
            ).all()
        return _record(row, [m.station_id for m in members])

    def put(self, site: SiteRecord) -> SiteRecord:
        """Create or replace ``site`` (its stations too: they leave any other site)."""
        now = self._clock_ms()
        values = {
            "id": site.id,
            "name": site.name,
            "limit_w": float(site.limit_w),
            "schedule": json.dumps([[m, w] for m, w in site.schedule]),
            "timezone": site.timezone,
            "evse_limits": json.dumps({k: list(v) for k, v in site.evse_limits.items()}),
            "updated_at": now,
        }
        with self._db.write() as conn:
            changed = conn.execute(
                text(
                    "UPDATE sites SET name = :name, limit_w = :limit_w, schedule = :schedule,"
                    " timezone = :timezone, evse_limits = :evse_limits,"
                    " updated_at = :updated_at WHERE id = :id"
                ),
                values,
            ).rowcount
            if not changed:
                conn.execute(
                    text(
                        "INSERT INTO sites (id, name, limit_w, schedule, timezone, evse_limits,"
                        " updated_at) VALUES (:id, :name, :limit_w, :schedule, :timezone,"
                        " :evse_limits, :updated_at)"
                    ),
                    values,
                )
            conn.execute(text("DELETE FROM site_stations WHERE site_id = :id"), {"id": site.id})
            for station_id in sorted(set(site.station_ids)):
                conn.execute(
                    text("DELETE FROM site_stations WHERE station_id = :station"),
                    {"station": station_id},
                )
                conn.execute(
                    text("INSERT INTO site_stations (station_id, site_id) VALUES (:s, :id)"),
                    {"s": station_id, "id": site.id},
                )
        found = self.get(site.id)
        assert found is not None
        return found

    def set_limit(
        self, site_id: str, limit_w: float, schedule: Sequence[tuple[int, float]] | None = None
    ) -> SiteRecord:
        """A new limit (and, when given, schedule; ``[]`` removes it); ``NotFound``."""
        site = self.get(site_id)
        if site is None:
            raise NotFound(f"no site {site_id}")
        return self.put(
            SiteRecord(
                id=site.id,
                name=site.name,
                limit_w=limit_w,
                schedule=site.schedule if schedule is None else tuple(schedule),
                timezone=site.timezone,
                evse_limits=site.evse_limits,
                station_ids=site.station_ids,
            )
        )

    def put_live(self, site_id: str, live: Mapping[str, Any]) -> None:
        """What the site actor decided, for readers in other processes (the API)."""
        with self._db.write() as conn:
            conn.execute(
                text("UPDATE sites SET live = :live, live_at = :at WHERE id = :id"),
                {"live": json.dumps(live), "at": self._clock_ms(), "id": site_id},
            )

    def set_departure(self, session_id: str, departure_at: int) -> None:
        """The driver of ``session_id`` leaves at ``departure_at`` (epoch ms); departures more
        than a day old are forgotten on the way."""
        now = self._clock_ms()
        with self._db.write() as conn:
            conn.execute(text("DELETE FROM departures WHERE session_id = :s"), {"s": session_id})
            conn.execute(
                text(
                    "INSERT INTO departures (session_id, departure_at, set_at)"
                    " VALUES (:s, :at, :now)"
                ),
                {"s": session_id, "at": departure_at, "now": now},
            )
            conn.execute(
                text("DELETE FROM departures WHERE departure_at < :old"),
                {"old": now - 24 * 3600 * 1000},
            )

    def departures(self) -> dict[str, int]:
        """Session id -> departure (epoch ms), for the sessions whose driver set one."""
        with self._db.read() as conn:
            rows = conn.execute(text("SELECT session_id, departure_at FROM departures")).all()
        return {row.session_id: int(row.departure_at) for row in rows}

    def delete(self, site_id: str) -> bool:
        with self._db.write() as conn:
            conn.execute(text("DELETE FROM site_stations WHERE site_id = :id"), {"id": site_id})
            return bool(
                conn.execute(text("DELETE FROM sites WHERE id = :id"), {"id": site_id}).rowcount
            )
