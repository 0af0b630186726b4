"""What a site is and what its actor decided: the messages and records of
:mod:`actors.site` (configs, EVSE snapshots, the decided :class:`SiteState` and the
:class:`SiteBoard` any thread reads), apart from the actor's behaviour."""

from __future__ import annotations

import datetime as dt
import threading
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from protocol import EvseStatus

__all__ = [
    "EvseSnapshot",
    "ScheduleStep",
    "SiteBoard",
    "SiteConfig",
    "SiteConfigChanged",
    "SiteDepartures",
    "SiteEvses",
    "SiteState",
    "limit_at",
    "state_json",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class ScheduleStep:
    """From ``start_minute`` (minutes after local midnight) on, the limit is ``limit_w``."""

    start_minute: int
    limit_w: float


@dataclass(frozen=True, slots=True, kw_only=True)
class SiteConfig:
    id: str
    name: str
    limit_w: float
    station_ids: frozenset[str] = frozenset()
    schedule: tuple[ScheduleStep, ...] = ()
    timezone: str = "UTC"
    evse_limits: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    """EVSE id -> (min W, max W), over what the station announced."""


def limit_at(config: SiteConfig, now_s: float) -> tuple[float, float | None]:
    """The limit in force at ``now_s`` and the epoch second of the next step (``None``
    without a schedule)."""
    if not config.schedule:
        return config.limit_w, None
    zone = zoneinfo.ZoneInfo(config.timezone)
    local = dt.datetime.fromtimestamp(now_s, zone)
    minute = local.hour * 60 + local.minute
    steps = sorted(config.schedule, key=lambda s: s.start_minute)
    current = steps[-1]  # before the first step of the day: yesterday's last
    for step in steps:
        if step.start_minute <= minute:
            current = step
    later = [s for s in steps if s.start_minute > minute]
    day = local.replace(hour=0, minute=0, second=0, microsecond=0)
    if later:
        nxt = day + dt.timedelta(minutes=later[0].start_minute)
    else:
        nxt = day + dt.timedelta(days=1, minutes=steps[0].start_minute)
    return current.limit_w, nxt.timestamp()


@dataclass(frozen=True, slots=True, kw_only=True)
class EvseSnapshot:
    """What a site needs of one EVSE (from its latest state)."""

    evse_id: str
    station_id: str
    status: EvseStatus
    session_open: bool
    power_w: float
    min_w: float
    max_w: float
    reachable: bool
    session_id: str | None = None
    soc: float | None = None
    target_soc: float | None = None
    session_energy_wh: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class SiteDepartures:
    """Told to a site actor: session id -> when its driver leaves (epoch ms)."""

    departures: Mapping[str, int]


@dataclass(frozen=True, slots=True, kw_only=True)
class SiteEvses:
    """Told to a site actor: its EVSEs that changed, latest state each."""

    evses: tuple[EvseSnapshot, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class SiteConfigChanged:
    config: SiteConfig


@dataclass(frozen=True, slots=True, kw_only=True)
class SiteState:
    """A site as its actor last decided it (W)."""

    id: str
    name: str
    limit_w: float
    allocated_w: float
    measured_w: float
    evse_limits: Mapping[str, int]
    paused: tuple[str, ...]
    active: int
    commands_sent: int
    reallocations: int
    updated_ms: int
    history: tuple[tuple[int, float, float, float], ...] = ()
    """``(at_ms, limit_w, allocated_w, measured_w)`` every ``HISTORY_STEP_S``, oldest first."""


class SiteBoard:
    """The sites' latest :class:`SiteState`, readable from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sites: dict[str, SiteState] = {}

    def put(self, state: SiteState) -> None:
        with self._lock:
            self._sites[state.id] = state

    def drop(self, site_id: str) -> None:
        with self._lock:
            self._sites.pop(site_id, None)

    def get(self, site_id: str) -> SiteState | None:
        with self._lock:
            return self._sites.get(site_id)

    def all(self) -> list[SiteState]:
        with self._lock:
            return sorted(self._sites.values(), key=lambda s: s.id)


def state_json(state: SiteState) -> dict[str, Any]:
    """A :class:`SiteState` as the API shows it (kW with one decimal, W per EVSE)."""
    return {
        "limit_kw": round(state.limit_w / 1000, 1),
        "allocated_kw": round(state.allocated_w / 1000, 1),
        "measured_kw": round(state.measured_w / 1000, 1),
        "active_sessions": state.active,
        "paused": list(state.paused),
        "evse_limits_w": dict(sorted(state.evse_limits.items())),
        "commands_sent": state.commands_sent,
        "reallocations": state.reallocations,
        "at": state.updated_ms,
        "history": [
            {
                "at": at,
                "limit_kw": round(limit / 1000, 1),
                "allocated_kw": round(allocated / 1000, 1),
                "measured_kw": round(measured / 1000, 1),
            }
            for at, limit, allocated, measured in state.history
        ],
    }
