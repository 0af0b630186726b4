"""The operator pages' API (operators only, HTTPS): sessions with filters and as CSV, driver
accounts with disable/enable, and a station's recent events.

These read the SQL storage only (and the read model for a station's EVSEs), so a gateway
apart from the node (``smartcharge gateway``) serves them exactly as a node's worker does.
Lists are newest first and paged by a keyset cursor (``next`` -> ``before``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import falcon

from actors.fleet_view import FleetView
from gateway.operator_csv import sessions_csv
from gateway.security import json_body, principal, require
from storage import Cursor, DriverAccount, Role, SessionRecord, Storage

__all__ = ["CSV_MAX_ROWS", "add_operator_routes"]

API = "/api/v1"
CSV_MAX_ROWS: Final = 10_000
"""Rows in one CSV file at most; more matching rows: ``X-Truncated`` and ``X-Next-Before``."""
STATION_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
EVSE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}\.[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
USER_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
MAX_TEXT = 254


def _text(req: falcon.Request, name: str, pattern: re.Pattern[str] | None = None) -> str | None:
    value: str | None = req.get_param(name)
    if value is None or value == "":
        return None
    if len(value) > MAX_TEXT or (pattern is not None and not pattern.match(value)):
        raise falcon.HTTPInvalidParam("The value is malformed.", name)
    return value


def _time(req: falcon.Request, name: str) -> int | None:
    """Epoch milliseconds, or an ISO 8601 date or time (UTC unless it names a zone)."""
    value = _text(req, name)
    if value is None:
        return None
    if value.isdigit() and len(value) <= 15:
        return int(value)
    try:
        when = datetime.fromisoformat(value)
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return int(when.timestamp() * 1000)
    except (ValueError, OverflowError):
        raise falcon.HTTPInvalidParam("Use epoch milliseconds or ISO 8601.", name) from None


def _cursor(req: falcon.Request) -> Cursor | None:
    value = _text(req, "before")
    if value is None:
        return None
    try:
        return Cursor.parse(value)
    except ValueError as exc:
        raise falcon.HTTPInvalidParam(str(exc), "before") from None


def session_json(record: SessionRecord) -> dict[str, Any]:
    s = record.session
    return {
        "id": s.id,
        "station_id": s.station_id,
        "evse_id": s.evse_id,
        "driver_id": s.driver_id,
        "driver_email": record.driver_email,
        "started_at": s.started_at,
        "ended_at": s.ended_at,
        "energy_wh": round(s.energy_wh, 1),
        "peak_power_w": round(s.peak_power_w, 1),
        "target_soc": s.target_soc,
        "end_reason": s.end_reason,
        "open": s.ended_at is None,
    }


def account_json(account: DriverAccount) -> dict[str, Any]:
    return {
        "id": account.id,
        "email": account.email,
        "created_at": account.created_at,
        "confirmed": account.confirmed_at is not None,
        "disabled": account.disabled_at is not None,
        "disabled_at": account.disabled_at,
        "sessions": account.sessions,
    }


@dataclass(frozen=True, slots=True)
class SessionQuery:
    """The filters of ``/sessions`` and ``/sessions.csv``, validated."""

    filters: dict[str, Any]
    before: Cursor | None

    @classmethod
    def of(cls, req: falcon.Request, storage: Storage) -> SessionQuery | None:
        """None when the filters can match nothing (an email without an account)."""
        status = _text(req, "status")
        if status not in (None, "open", "closed"):
            raise falcon.HTTPInvalidParam("Use open or closed.", "status")
        driver = _text(req, "driver")
        if driver is not None and "@" in driver:
            user = storage.users.by_email(driver)
            if user is None:
                return None
            driver = user.id
        elif driver is not None and not USER_ID.match(driver):
            raise falcon.HTTPInvalidParam("Use a driver's email or id.", "driver")
        filters = {
            "station_id": _text(req, "station", STATION_ID),
            "evse_id": _text(req, "evse", EVSE_ID),
            "driver_id": driver,
            "is_open": None if status is None else status == "open",
            "started_from": _time(req, "from"),
            "started_before": _time(req, "to"),
        }
        return cls(filters, _cursor(req))

    def page(self, storage: Storage, limit: int) -> tuple[list[SessionRecord], Cursor | None]:
        rows = storage.reports.sessions(**self.filters, before=self.before, limit=limit + 1)
        more = len(rows) > limit
        rows = rows[:limit]
        last = rows[-1].session if rows else None
        return rows, Cursor(last.started_at, last.id) if more and last else None


@falcon.before(require("operator"))
class OperatorSessionsResource:
    """``GET /sessions`` (JSON, paged) and ``GET /sessions.csv`` (at most
    :data:`CSV_MAX_ROWS` rows; the same filters)."""

    def __init__(self, storage: Storage) -> None:
        self._storage = storage

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        limit = req.get_param_as_int("limit", default=50, min_value=1, max_value=200) or 50
        query = SessionQuery.of(req, self._storage)
        rows, cursor = ([], None) if query is None else query.page(self._storage, limit)
        resp.media = {
            "sessions": [session_json(r) for r in rows],
            "next": None if cursor is None else str(cursor),
        }

    def on_get_csv(self, req: falcon.Request, resp: falcon.Response) -> None:
        limit = (
            req.get_param_as_int("limit", default=CSV_MAX_ROWS, min_value=1, max_value=CSV_MAX_ROWS)
            or CSV_MAX_ROWS
        )
        query = SessionQuery.of(req, self._storage)
        rows, cursor = ([], None) if query is None else query.page(self._storage, limit)
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        resp.content_type = "text/csv; charset=utf-8"
        resp.set_header("Content-Disposition", f'attachment; filename="sessions-{stamp}.csv"')
        resp.set_header("Cache-Control", "no-store")
        resp.set_header("X-Truncated", "false" if cursor is None else "true")
        if cursor is not None:
            resp.set_header("X-Next-Before", str(cursor))
        resp.data = sessions_csv(rows)


@falcon.before(require("operator"))
class DriverAccountsResource:
    """``GET /users``: driver accounts (deleted ones left out), newest first."""

    def __init__(self, storage: Storage) -> None:
        self._storage = storage

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        limit = req.get_param_as_int("limit", default=50, min_value=1, max_value=200) or 50
        query = req.get_param("q") or None
        if query is not None and len(query) > MAX_TEXT:
            raise falcon.HTTPInvalidParam("The value is too long.", "q")
        rows = self._storage.reports.drivers(query=query, before=_cursor(req), limit=limit + 1)
        more = len(rows) > limit
        rows = rows[:limit]
        resp.media = {
            "users": [account_json(a) for a in rows],
            "next": str(Cursor(rows[-1].created_at, rows[-1].id)) if more and rows else None,
        }


@falcon.before(require("operator"))
class DriverAccessResource:
    """``POST /users/{user_id}/disable`` and ``/enable``: a disabled driver cannot log in or
    refresh, and their tokens stop working for writes (``storage.UserStore.disable``).
    Operators' accounts (the caller's too) are managed with ``smartcharge admin``."""

    def __init__(self, storage: Storage) -> None:
        self._storage = storage

    def on_post_disable(self, req: falcon.Request, resp: falcon.Response, user_id: str) -> None:
        self._change(req, resp, user_id, disable=True)

    def on_post_enable(self, req: falcon.Request, resp: falcon.Response, user_id: str) -> None:
        self._change(req, resp, user_id, disable=False)

    def _change(
        self, req: falcon.Request, resp: falcon.Response, user_id: str, *, disable: bool
    ) -> None:
        json_body(req, {})
        users = self._storage.users
        user = users.get(user_id) if USER_ID.match(user_id) else None
        if user is None or user.email.endswith("@deleted.invalid"):
            raise falcon.HTTPNotFound(description=f"no driver account {user_id!r}")
        if user.id == principal(req).user_id or user.role is not Role.DRIVER:
            raise falcon.HTTPForbidden(
                title="Forbidden",
                description="only drivers' accounts are managed here; operators' with"
                " 'smartcharge admin'",
            )
        if disable:
            users.disable(user.id)  # False when it already was: the same answer
        else:
            users.enable(user.id)
        found = self._storage.reports.drivers(user_id=user.id, limit=1)
        if not found:
            raise falcon.HTTPNotFound(description=f"no driver account {user_id!r}")
        resp.media = account_json(found[0])


@falcon.before(require("operator"))
class StationEventsResource:
    """``GET /stations/{station_id}/events``: the station's recent status changes, sessions
    started and ended, and alerts (where the storage keeps them), newest first."""

    def __init__(self, storage: Storage, view: FleetView) -> None:
        self._storage = storage
        self._view = view

    def on_get(self, req: falcon.Request, resp: falcon.Response, station_id: str) -> None:
        limit = req.get_param_as_int("limit", default=50, min_value=1, max_value=200) or 50
        station = self._view.station(station_id) if STATION_ID.match(station_id) else None
        if station is None:
            raise falcon.HTTPNotFound(description=f"unknown station {station_id!r}")
        evse_ids = [str(e.state.evse_id) for e in station.evses]
        events = [*self._status(evse_ids, limit), *self._sessions(station_id, limit)]
        events += self._alerts(station_id, limit)
        events.sort(key=lambda e: e["at"], reverse=True)
        resp.media = {"station_id": station_id, "events": events[:limit]}

    def _status(self, evse_ids: list[str], limit: int) -> list[dict[str, Any]]:
        return [
            _event(
                e.ts,
                "status",
                e.evse_id,
                f"{e.from_status or '?'} → {e.to_status}",
                session_id=e.session_id,
                status=e.to_status,
            )
            for e in self._storage.reports.status_events(evse_ids, limit)
        ]

    def _sessions(self, station_id: str, limit: int) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        for record in self._storage.reports.sessions(station_id=station_id, limit=limit):
            s = record.session
            who = record.driver_email or "no driver account"
            found.append(
                _event(
                    s.started_at, "session_started", s.evse_id, f"started ({who})", session_id=s.id
                )
            )
            if s.ended_at is not None:
                kwh = f"{s.energy_wh / 1000:.2f} kWh"
                reason = f", {s.end_reason}" if s.end_reason else ""
                message = f"ended: {kwh}{reason}"
                found.append(
                    _event(s.ended_at, "session_ended", s.evse_id, message, session_id=s.id)
                )
        return found

    def _alerts(self, station_id: str, limit: int) -> list[dict[str, Any]]:
        """The operators' alert log, on storage that has one (``storage.alerts``)."""
        alerts = getattr(self._storage, "alerts", None)
        if alerts is None:
            return []
        return [
            _event(a.at, "alert", a.evse_id, a.message, severity=a.severity)
            for a in alerts.page(limit=limit, station_id=station_id)
        ]


def _event(
    at: int,
    kind: str,
    evse_id: str | None,
    message: str,
    *,
    session_id: str | None = None,
    status: str | None = None,
    severity: str | None = None,
) -> dict[str, Any]:
    return {
        "at": at,
        "kind": kind,
        "evse_id": evse_id,
        "message": message,
        "session_id": session_id,
        "status": status,
        "severity": severity,
    }


def add_operator_routes(routes: Any, storage: Any, view: FleetView, *, accounts: bool) -> None:
    """The operator pages' routes, on SQL storage only (a Firebase user-data store keeps
    the sessions elsewhere); ``accounts``: local accounts, which disabling here locks out."""
    if not isinstance(storage, Storage):
        return
    sessions = OperatorSessionsResource(storage)
    routes.add_route(f"{API}/sessions", sessions)
    routes.add_route(f"{API}/sessions.csv", sessions, suffix="csv")
    routes.add_route(f"{API}/stations/{{station_id}}/events", StationEventsResource(storage, view))
    if accounts:
        routes.add_route(f"{API}/users", DriverAccountsResource(storage))
        access = DriverAccessResource(storage)
        routes.add_route(f"{API}/users/{{user_id}}/disable", access, suffix="disable")
        routes.add_route(f"{API}/users/{{user_id}}/enable", access, suffix="enable")
