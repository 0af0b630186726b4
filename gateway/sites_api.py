"""``/api/v1/sites`` (operators): smart-charging sites, their limits and what the node decided.

A site (``storage._sites``) is written here and read by the CSMS node within a second
(``actors.site_router``), whichever process serves the request; ``live`` is what the node's
site actor last decided (limit in force, allocated and measured kW, each EVSE's limit).

- ``GET /sites``, ``GET /sites/{id}``
- ``PUT /sites/{id}`` ``{"name", "limit_kw", "station_ids": [...], "schedule": [{"from":
  "07:00", "limit_kw": 60}], "timezone": "Europe/Rome", "evse_limits": {"st-001.1":
  {"min_kw": 1.4, "max_kw": 11}}}``: create or replace
- ``PUT /sites/{id}/limit`` ``{"limit_kw": 20}`` (and optionally ``"schedule"``)
- ``DELETE /sites/{id}``
"""

from __future__ import annotations

import re
import zoneinfo
from typing import Any, Final

import falcon

from gateway.security import json_body, principal, require
from storage import SiteRecord

__all__ = [
    "DepartureResource",
    "SiteLimitResource",
    "SiteResource",
    "SitesResource",
    "site_json",
]

SITE_ID: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
STATION_ID: Final = SITE_ID
EVSE_ID: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
MAX_LIMIT_KW: Final = 100_000.0
"""100 MW: more than any grid connection a CSMS shares out."""
MAX_STEPS: Final = 48
MAX_STATIONS: Final = 10_000
MAX_DEPARTURE_MS: Final = 48 * 3600 * 1000


def site_json(site: SiteRecord) -> dict[str, Any]:
    return {
        "id": site.id,
        "name": site.name,
        "limit_kw": round(site.limit_w / 1000, 3),
        "schedule": [
            {"from": f"{m // 60:02d}:{m % 60:02d}", "limit_kw": round(w / 1000, 3)}
            for m, w in site.schedule
        ],
        "timezone": site.timezone,
        "station_ids": list(site.station_ids),
        "evse_limits": {
            k: {"min_kw": round(lo / 1000, 3), "max_kw": round(hi / 1000, 3)}
            for k, (lo, hi) in sorted(site.evse_limits.items())
        },
        "updated_at": site.updated_at,
        "live": site.live,
        "live_at": site.live_at,
    }


def _invalid(message: str) -> falcon.HTTPError:
    return falcon.HTTPUnprocessableEntity(title="Invalid site", description=message)


def _kw(value: Any, name: str, *, low: float = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _invalid(f"{name} must be a number of kW")
    if not low <= float(value) <= MAX_LIMIT_KW:
        raise _invalid(f"{name} must be between {low:g} and {MAX_LIMIT_KW:g} kW")
    return float(value) * 1000


def _schedule(raw: Any) -> tuple[tuple[int, float], ...]:
    if not isinstance(raw, list) or len(raw) > MAX_STEPS:
        raise _invalid(f"schedule must be a list of at most {MAX_STEPS} steps")
    steps: dict[int, float] = {}
    for step in raw:
        if not isinstance(step, dict) or not isinstance(step.get("from"), str):
            raise _invalid('each schedule step is {"from": "HH:MM", "limit_kw": number}')
        found = re.fullmatch(r"([01]\d|2[0-3]):([0-5]\d)", step["from"])
        if found is None:
            raise _invalid(f"schedule: {step['from']!r} is not a time HH:MM")
        minute = int(found.group(1)) * 60 + int(found.group(2))
        if minute in steps:
            raise _invalid(f"schedule: two steps start at {step['from']}")
        steps[minute] = _kw(step.get("limit_kw"), "schedule limit_kw")
    return tuple(sorted(steps.items()))


def _timezone(raw: Any) -> str:
    if not isinstance(raw, str) or len(raw) > 64:
        raise _invalid("timezone must be an IANA name such as Europe/Rome")
    try:
        zoneinfo.ZoneInfo(raw)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise _invalid(f"unknown timezone {raw!r}") from None
    return raw


def _stations(raw: Any) -> tuple[str, ...]:
    if not isinstance(raw, list) or len(raw) > MAX_STATIONS:
        raise _invalid(f"station_ids must be a list of at most {MAX_STATIONS} ids")
    for station in raw:
        if not isinstance(station, str) or not STATION_ID.match(station):
            raise _invalid(f"{station!r} is not a station id")
    return tuple(sorted(set(raw)))


def _evse_limits(raw: Any) -> dict[str, tuple[float, float]]:
    if not isinstance(raw, dict) or len(raw) > 4 * MAX_STATIONS:
        raise _invalid('evse_limits must be {"<evse id>": {"min_kw": n, "max_kw": n}}')
    out: dict[str, tuple[float, float]] = {}
    for evse_id, bounds in raw.items():
        if not EVSE_ID.match(evse_id) or not isinstance(bounds, dict):
            raise _invalid(f"evse_limits: {evse_id!r} is not an EVSE id with its bounds")
        low = _kw(bounds.get("min_kw"), f"{evse_id} min_kw", low=0.1)
        high = _kw(bounds.get("max_kw"), f"{evse_id} max_kw", low=0.1)
        if low > high:
            raise _invalid(f"{evse_id}: min_kw is above max_kw")
        out[evse_id] = (low, high)
    return out


def _site_id(site_id: str, *, creating: bool = False) -> str:
    if not SITE_ID.match(site_id):
        if creating:
            raise _invalid("a site id is 1-64 of A-Z a-z 0-9 _ -, starting alphanumeric")
        raise falcon.HTTPNotFound(title="No such site", description=f"no site {site_id!r}")
    return site_id


@falcon.before(require("operator"))
class SitesResource:
    def __init__(self, sites: Any) -> None:
        self._sites = sites

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"sites": [site_json(s) for s in self._sites.all()]}


@falcon.before(require("operator"))
class SiteResource:
    def __init__(self, sites: Any) -> None:
        self._sites = sites

    def _found(self, site_id: str) -> SiteRecord:
        found: SiteRecord | None = self._sites.get(_site_id(site_id))
        if found is None:
            raise falcon.HTTPNotFound(title="No such site", description=f"no site {site_id!r}")
        return found

    def on_get(self, req: falcon.Request, resp: falcon.Response, site_id: str) -> None:
        resp.media = site_json(self._found(site_id))

    def on_put(self, req: falcon.Request, resp: falcon.Response, site_id: str) -> None:
        body = json_body(
            req,
            {
                "name": str,
                "limit_kw": (int, float),
                "station_ids": list,
                "schedule": list,
                "timezone": str,
                "evse_limits": dict,
            },
            required=("limit_kw",),
        )
        name = body.get("name", site_id)
        if not 0 < len(name) <= 100:
            raise _invalid("name must have 1 to 100 characters")
        record = SiteRecord(
            id=_site_id(site_id, creating=True),
            name=name,
            limit_w=_kw(body["limit_kw"], "limit_kw"),
            schedule=_schedule(body.get("schedule", [])),
            timezone=_timezone(body.get("timezone", "UTC")),
            evse_limits=_evse_limits(body.get("evse_limits", {})),
            station_ids=_stations(body.get("station_ids", [])),
        )
        created = self._sites.get(record.id) is None
        resp.media = site_json(self._sites.put(record))
        resp.status = falcon.HTTP_201 if created else falcon.HTTP_200

    def on_delete(self, req: falcon.Request, resp: falcon.Response, site_id: str) -> None:
        if not self._sites.delete(_site_id(site_id)):
            raise falcon.HTTPNotFound(title="No such site", description=f"no site {site_id!r}")
        resp.status = falcon.HTTP_204


@falcon.before(require("operator"))
class SiteLimitResource:
    """``PUT /sites/{id}/limit`` ``{"limit_kw": n, "schedule"?: [...]}``."""

    def __init__(self, sites: Any) -> None:
        self._sites = sites

    def on_put(self, req: falcon.Request, resp: falcon.Response, site_id: str) -> None:
        body = json_body(req, {"limit_kw": (int, float), "schedule": list}, required=("limit_kw",))
        schedule = _schedule(body["schedule"]) if "schedule" in body else None
        if self._sites.get(_site_id(site_id)) is None:
            raise falcon.HTTPNotFound(title="No such site", description=f"no site {site_id!r}")
        resp.media = site_json(
            self._sites.set_limit(site_id, _kw(body["limit_kw"], "limit_kw"), schedule)
        )


@falcon.before(require())
class DepartureResource:
    """``PUT /me/sessions/{session_id}/departure`` ``{"departure_at": epoch ms}``: the driver
    leaves then (within 48 h); on a site over its limit, a session that needs more energy per
    hour left gets a larger share. Only the session's own driver, only while it runs."""

    def __init__(self, sessions: Any, sites: Any, clock_ms: Any, session_driver: Any) -> None:
        self._sessions = sessions
        self._sites = sites
        self._clock_ms = clock_ms
        self._session_driver = session_driver
        """The CSMS's own record of who started a session (before its row is written)."""

    def on_put(self, req: falcon.Request, resp: falcon.Response, session_id: str) -> None:
        body = json_body(req, {"departure_at": int}, required=("departure_at",))
        caller = principal(req).user_id
        session = self._sessions.get(session_id) if EVSE_ID.match(session_id) else None
        if session is None:  # just started: its row follows the station's Charging
            mine = EVSE_ID.match(session_id) and self._session_driver(session_id) == caller
        else:
            mine = session.driver_id == caller and session.ended_at is None
        if not mine:
            raise falcon.HTTPNotFound(
                title="No such session", description="no running session of yours with that id"
            )
        now = self._clock_ms()
        at = body["departure_at"]
        if not now < at <= now + MAX_DEPARTURE_MS:
            raise falcon.HTTPUnprocessableEntity(
                title="Invalid departure",
                description="departure_at is epoch ms, in the next 48 hours",
            )
        self._sites.set_departure(session_id, at)
        resp.media = {"session_id": session_id, "departure_at": at}
