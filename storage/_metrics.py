"""Metrics: the ``evse_samples`` time series and the operators' summary of the sessions.

Samples are written in batches by one writer (the metrics recorder): ``insert_many`` is ~15
times faster than a row at a time. Raw samples are kept for a while, then
:meth:`MetricsStore.downsample` replaces them by one row per EVSE and time bucket. A row
remembers how many raw samples it stands for (``samples``) and its resolution
(``resolution_ms``, 0 for a raw sample), so averages stay exact when buckets are merged
again, and a pass only reads the rows still finer than its bucket (an index range scan).

:meth:`MetricsStore.summary` aggregates the ``sessions`` table in SQL. Days are UTC days,
bucketed as ``started_at - started_at % 86400000`` (plain integer arithmetic, the same on SQLite
and PostgreSQL); a session counts on the day it started.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from sqlalchemy import RowMapping, Select, Table, and_, case, delete, func, or_, select

from storage._engine import Clock, Database

__all__ = [
    "DAY_MS",
    "DayTotal",
    "EvseSample",
    "EvseUtilisation",
    "MetricsStore",
    "MetricsSummary",
    "StationTotal",
]

DAY_MS: Final = 86_400_000


@dataclass(frozen=True, slots=True, kw_only=True)
class EvseSample:
    """What an EVSE measured at ``ts`` (epoch ms); a downsampled row stands for ``samples``."""

    evse_id: str
    ts: int
    power_w: float
    energy_wh: float
    soc: float | None = None
    samples: int = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class DayTotal:
    day: str
    """``YYYY-MM-DD``, UTC."""
    energy_wh: float
    sessions: int


@dataclass(frozen=True, slots=True, kw_only=True)
class StationTotal:
    station_id: str
    energy_wh: float
    sessions: int


@dataclass(frozen=True, slots=True, kw_only=True)
class EvseUtilisation:
    evse_id: str
    percent: float
    """Share of the utilisation window with a session open, 0 to 100."""


@dataclass(frozen=True, slots=True, kw_only=True)
class MetricsSummary:
    now: int
    days_from: int
    """Midnight UTC starting the oldest day of ``by_day``."""
    utilisation_from: int
    by_day: tuple[DayTotal, ...]
    """Every day of the window, oldest first (days without sessions included, at zero)."""
    by_station: tuple[StationTotal, ...]
    """Stations with sessions in the window, most energy first."""
    average_duration_s: float | None
    """Over the sessions of the window that have ended; None without any."""
    utilisation: tuple[EvseUtilisation, ...]
    """EVSEs with a session open in the utilisation window, by id."""

    @property
    def today(self) -> DayTotal:
        return self.by_day[-1]


def _sample(row: RowMapping) -> EvseSample:
    return EvseSample(
        evse_id=row["evse_id"],
        ts=int(row["ts"]),
        power_w=float(row["power_w"]),
        energy_wh=float(row["energy_wh"]),
        soc=None if row["soc"] is None else float(row["soc"]),
        samples=int(row["samples"]),
    )


def _day(midnight_ms: int) -> str:
    return datetime.fromtimestamp(midnight_ms / 1000, tz=UTC).strftime("%Y-%m-%d")


def _merge(bucket: list[RowMapping], evse_id: str, ts: int) -> dict[str, Any]:
    """One row for a bucket: average power (weighted by samples), highest energy, last soc."""
    weight = sum(int(r["samples"]) for r in bucket)
    socs = [r["soc"] for r in bucket if r["soc"] is not None]
    return {
        "evse_id": evse_id,
        "ts": ts,
        "power_w": sum(float(r["power_w"]) * int(r["samples"]) for r in bucket) / weight,
        "energy_wh": max(float(r["energy_wh"]) for r in bucket),
        "soc": socs[-1] if socs else None,
        "samples": weight,
    }


class MetricsStore:
    """The ``evse_samples`` table (one writer: the metrics recorder) and the session summary."""

    def __init__(self, db: Database, clock_ms: Clock) -> None:
        self._db = db
        self._clock_ms = clock_ms
        self._samples = db.table("evse_samples")
        self._sessions = db.table("sessions")

    def add_many(self, samples: Iterable[EvseSample]) -> int:
        """Insert raw samples in one transaction (one executemany); returns how many."""
        rows = [
            {
                "evse_id": s.evse_id,
                "ts": s.ts,
                "power_w": float(s.power_w),
                "energy_wh": float(s.energy_wh),
                "soc": None if s.soc is None else float(s.soc),
                "samples": s.samples,
                "resolution_ms": 0,
            }
            for s in samples
        ]
        if rows:  # Core executemany: dataset's insert_many re-checks the columns per row
            with self._db.write() as conn:
                conn.execute(self._samples.table.insert(), rows)
        return len(rows)

    def series(self, evse_id: str, since: int, until: int) -> list[EvseSample]:
        """The EVSE's samples with ``since <= ts < until``, oldest first."""
        t = self._samples.table
        stmt = (
            select(t)
            .where(t.c.evse_id == evse_id, t.c.ts >= since, t.c.ts < until)
            .order_by(t.c.ts)
        )
        with self._db.read() as conn:
            return [_sample(row) for row in conn.execute(stmt).mappings()]

    def downsample(self, older_than_ms: int, bucket_ms: int) -> int:
        """Replace the rows finer than ``bucket_ms`` in whole buckets before ``older_than_ms``
        by one row per EVSE and bucket (at the bucket's start). Returns the rows removed.

        Idempotent: a second pass finds nothing finer than its bucket. A bucket holding only a
        row of a coarser earlier pass is left alone.
        """
        if bucket_ms <= 0:
            raise ValueError("bucket_ms must be positive")
        cutoff = older_than_ms - older_than_ms % bucket_ms
        t = self._samples.table
        finer = and_(t.c.resolution_ms < bucket_ms, t.c.ts < cutoff)
        query = select(t).where(finer).order_by(t.c.evse_id, t.c.ts)
        with self._db.write() as conn:
            rows = list(conn.execute(query).mappings())
            if not rows:
                return 0
            buckets: dict[tuple[str, int], list[RowMapping]] = {}
            for row in rows:
                ts = int(row["ts"])
                buckets.setdefault((row["evse_id"], ts - ts % bucket_ms), []).append(row)
            merged = [
                {**_merge(bucket, evse_id, start), "resolution_ms": bucket_ms}
                for (evse_id, start), bucket in buckets.items()
            ]
            conn.execute(delete(t).where(finer))
            self._samples.insert_many(merged, chunk_size=1000)
        return len(rows)

    def summary(self, days: int = 30, utilisation_ms: int = DAY_MS) -> MetricsSummary:
        """Energy and sessions per UTC day (the last ``days``, today included) and per station,
        the average duration, and each EVSE's share of the last ``utilisation_ms`` with a
        session open; all from the ``sessions`` rows, in SQL (range scans on ``started_at``)."""
        now = self._clock_ms()
        days_from = now - now % DAY_MS - (days - 1) * DAY_MS
        since = now - utilisation_ms
        t = self._sessions.table
        in_window = and_(t.c.started_at >= days_from, t.c.started_at <= now)
        energy, count = func.coalesce(func.sum(t.c.energy_wh), 0.0), func.count()
        day = (t.c.started_at - t.c.started_at % DAY_MS).label("day")
        with self._db.read() as conn:
            per_day = {
                int(d): (float(e), int(n))
                for d, e, n in conn.execute(
                    select(day, energy, count).where(in_window).group_by(day)
                )
            }
            stations = [
                StationTotal(station_id=s, energy_wh=float(e), sessions=int(n))
                for s, e, n in conn.execute(
                    select(t.c.station_id, energy, count).where(in_window).group_by(t.c.station_id)
                )
            ]
            average_ms = conn.execute(
                select(func.avg(t.c.ended_at - t.c.started_at)).where(
                    in_window, t.c.ended_at.is_not(None)
                )
            ).scalar()
            busy = list(conn.execute(_busy_ms_per_evse(t, since, now)))
        by_day = []
        for midnight in range(days_from, days_from + days * DAY_MS, DAY_MS):
            total, sessions = per_day.get(midnight, (0.0, 0))
            by_day.append(DayTotal(day=_day(midnight), energy_wh=total, sessions=sessions))
        return MetricsSummary(
            now=now,
            days_from=days_from,
            utilisation_from=since,
            by_day=tuple(by_day),
            by_station=tuple(sorted(stations, key=lambda st: (-st.energy_wh, st.station_id))),
            average_duration_s=None if average_ms is None else float(average_ms) / 1000,
            utilisation=tuple(
                EvseUtilisation(evse_id=e, percent=min(100.0, 100.0 * float(ms) / utilisation_ms))
                for e, ms in busy
            ),
        )


def _busy_ms_per_evse(t: Table, since: int, now: int) -> Select[tuple[str, Any]]:
    """Per EVSE, the milliseconds of ``[since, now]`` covered by its sessions (each session
    clipped to the window; an open one runs until ``now``). ``CASE`` rather than
    ``min``/``max``/``least``/``greatest``, which differ between SQLite and PostgreSQL."""
    end = case((or_(t.c.ended_at.is_(None), t.c.ended_at > now), now), else_=t.c.ended_at)
    start = case((t.c.started_at < since, since), else_=t.c.started_at)
    return (
        select(t.c.evse_id, func.sum(end - start))
        .where(t.c.started_at < now, or_(t.c.ended_at > since, t.c.ended_at.is_(None)))
        .group_by(t.c.evse_id)
        .order_by(t.c.evse_id)
    )
