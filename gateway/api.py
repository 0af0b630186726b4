"""The driver and operator API (under ``/api/v1``): small noun resources.

Each resource gets its collaborators injected; permission rules live in
:class:`actors.charging.ChargingService`, transport and token rules in
:mod:`gateway.security`, error mapping in :mod:`gateway.app`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import falcon

from actors.charging import Caller, Charging
from actors.fleet_view import FleetView
from gateway.account_mail import AccountMail
from gateway.auth import Authenticator, Principal
from gateway.login_guard import LoginGuard
from gateway.ratelimit import SlidingWindowLimiter
from gateway.security import json_body, principal, require
from gateway.views import ANONYMOUS, Viewer, evse_json, outcome_json
from storage.errors import InvalidCredentials

__all__ = [
    "AuthResource",
    "EvseActionResource",
    "EvseInfoResource",
    "MaintenanceResource",
    "MyNotificationsResource",
    "MySessionsResource",
    "NearestResource",
    "ReservationResource",
    "nearest_evses",
    "viewer",
]

CREDENTIALS = {"email": str, "password": str}


def caller(req: falcon.Request) -> Caller:
    who: Principal = principal(req)
    return Caller(user_id=who.user_id, operator=who.role == "operator")


def viewer(req: falcon.Request, driver_of: Callable[[str], str | None]) -> Viewer:
    """Who reads (anonymous without a token): what ids an EVSE's JSON may show them.
    ``driver_of``: a session's driver from memory (``ChargingService.session_driver``)."""
    who: Principal | None = getattr(req.context, "principal", None)
    if who is None:
        return ANONYMOUS
    return Viewer(user_id=who.user_id, operator=who.role == "operator", driver_of=driver_of)


class AuthResource:
    """``POST /auth/{action}``: register, login, refresh, logout, and with mail (``mail``)
    reset, reset/confirm and confirm (``gateway.account_mail``; 503 without mail).

    Logins go through a :class:`LoginGuard` (failures per account *and* address: nobody can
    lock someone else out); sign-ups and reset requests through ``signups`` per address.
    """

    def __init__(
        self,
        auth: Authenticator,
        guard: LoginGuard,
        signups: SlidingWindowLimiter,
        mail: AccountMail | None = None,
    ) -> None:
        self._auth = auth
        self._guard = guard
        self._signups = signups
        self._mail = mail

    def on_post_register(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = json_body(req, CREDENTIALS, required=("email", "password"))
        self._limit_signups(req)
        if self._mail is not None:
            self._mail.sign_up(body["email"], body["password"])
            _accepted(resp, "check your mailbox to go on")
            return
        resp.media = self._auth.register(body["email"], body["password"]).as_json()
        resp.status = falcon.HTTP_201

    def on_post_login(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = json_body(req, CREDENTIALS, required=("email", "password"))
        email, address = body["email"], _address(req)
        _refuse_for(self._guard.check(email, address))
        try:
            tokens = self._auth.login(email, body["password"])
        except InvalidCredentials:
            self._guard.failed(email, address)
            raise
        self._guard.succeeded(email, address)
        resp.media = tokens.as_json()

    def on_post_refresh(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = json_body(req, {"refresh_token": str}, required=("refresh_token",))
        resp.media = self._auth.refresh(body["refresh_token"]).as_json()

    def on_post_logout(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = json_body(req, {"refresh_token": str}, required=("refresh_token",))
        self._auth.logout(body["refresh_token"])
        resp.status = falcon.HTTP_204

    def on_post_reset(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = json_body(req, {"email": str}, required=("email",))
        mail = self._mail_or_503()
        self._limit_signups(req)
        mail.request_reset(body["email"])
        _accepted(resp, "if this address has an account, a reset link is on its way")

    def on_post_reset_confirm(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = json_body(req, {"token": str, "password": str}, required=("token", "password"))
        email = self._mail_or_503().reset(body["token"], body["password"])
        resp.media = self._auth.login(email, body["password"]).as_json()

    def on_post_confirm(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = json_body(req, {"token": str}, required=("token",))
        self._mail_or_503().confirm(body["token"])
        resp.status = falcon.HTTP_204

    def _mail_or_503(self) -> AccountMail:
        if self._mail is None:
            raise falcon.HTTPServiceUnavailable(
                title="No mail", description="mail is not configured on this server"
            )
        return self._mail

    def _limit_signups(self, req: falcon.Request) -> None:
        address = _address(req)
        _refuse_for(self._guard.per_address.hit(address) or self._signups.hit(address))


def _address(req: falcon.Request) -> str:
    """The peer's address: gunicorn trusts no X-Forwarded-For (``forwarded_allow_ips``)."""
    return req.remote_addr or "?"


def _refuse_for(retry_after: float | None) -> None:
    if retry_after is not None:
        wait = max(1, math.ceil(retry_after))
        raise falcon.HTTPTooManyRequests(
            title="Too many attempts",
            description=f"too many attempts; retry in {wait} s",
            retry_after=wait,
        )


def _accepted(resp: falcon.Response, message: str) -> None:
    resp.status = falcon.HTTP_202
    resp.media = {"status": "accepted", "message": message}


def _limit(limiter: SlidingWindowLimiter, key: str, what: str) -> None:
    """Count a hit on ``key``; over the limit, a 429 with ``Retry-After``."""
    retry_after = limiter.hit(key)
    if retry_after is not None:
        wait = max(1, math.ceil(retry_after))
        raise falcon.HTTPTooManyRequests(
            title=f"Too many {what}",
            description=f"too many {what}; retry in {wait} s",
            retry_after=wait,
        )


def nearest_evses(
    view: FleetView,
    lat: float,
    lon: float,
    limit: int,
    available_only: bool,
    who: Viewer = ANONYMOUS,
) -> list[dict[str, Any]]:
    """EVSEs by great-circle distance from ``(lat, lon)``, nearest first (spatial index)."""
    now = view.now()
    return [
        {
            **evse_json(evse, now, view.reservation(evse.state.evse_id), who),
            "distance_km": round(distance, 3),
            "station_name": station.station.name,
            "lat": station.station.lat,
            "lon": station.station.lon,
        }
        for distance, station, evse in view.nearest(lat, lon, limit, available_only)
    ]


class NearestResource:
    """``GET /evses/nearest?lat=&lon=&limit=&available=true`` (public)."""

    def __init__(self, view: FleetView, driver_of: Callable[[str], str | None]) -> None:
        self._view = view
        self._driver_of = driver_of

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        lat = req.get_param_as_float("lat", required=True, min_value=-90, max_value=90)
        lon = req.get_param_as_float("lon", required=True, min_value=-180, max_value=180)
        limit = req.get_param_as_int("limit", default=10, min_value=1, max_value=100)
        available = req.get_param_as_bool("available", default=False)
        assert lat is not None
        assert lon is not None
        for name, value in (("lat", lat), ("lon", lon)):
            if math.isnan(value):  # NaN passes min_value/max_value: every comparison is False
                raise falcon.HTTPInvalidParam("The value must be a number.", name)
        who = viewer(req, self._driver_of)
        found = nearest_evses(self._view, lat, lon, limit, bool(available), who)
        resp.media = {"evses": found}


@falcon.before(require())
class EvseInfoResource:
    """``GET /evses/{evse_id}/info``: a live round trip to the station, so limited per user
    (``per_user``: a person asks now and then; a script in a loop is refused with 429)."""

    def __init__(self, charging: Charging, per_user: SlidingWindowLimiter) -> None:
        self._charging = charging
        self._per_user = per_user

    def on_get(self, req: falcon.Request, resp: falcon.Response, evse_id: str) -> None:
        _limit(self._per_user, principal(req).user_id, "live info requests")
        outcome = self._charging.info(evse_id)
        held = self._charging.reservation_count(evse_id)
        resp.media = outcome_json(outcome, viewer(req, self._charging.session_driver), held)


@falcon.before(require())
class ReservationResource:
    """``POST``/``DELETE /evses/{evse_id}/reservation``: the count."""

    def __init__(self, charging: Charging, view: FleetView) -> None:
        self._charging = charging
        self._view = view

    def on_post(self, req: falcon.Request, resp: falcon.Response, evse_id: str) -> None:
        json_body(req, {})
        reservation = self._charging.reserve(caller(req), evse_id)
        resp.status = falcon.HTTP_201
        resp.media = {
            **reservation.public(int(self._view.now() * 1000)),
            "evse_id": evse_id,
            "created_at": reservation.created_at,
        }

    def on_delete(self, req: falcon.Request, resp: falcon.Response, evse_id: str) -> None:
        self._charging.cancel_reservation(caller(req), evse_id)
        resp.status = falcon.HTTP_204


@falcon.before(require())
class EvseActionResource:
    """``POST /evses/{evse_id}/start`` and ``/stop``."""

    def __init__(self, charging: Charging) -> None:
        self._charging = charging

    def on_post_start(self, req: falcon.Request, resp: falcon.Response, evse_id: str) -> None:
        body = json_body(req, {"target_soc": (int, float)})
        target = body.get("target_soc")
        if target is not None and not 1 <= target <= 100:
            raise falcon.HTTPUnprocessableEntity(
                title="Invalid field", description="target_soc must be 1 to 100"
            )
        started = self._charging.start(caller(req), evse_id, target)
        resp.status = falcon.HTTP_201
        resp.media = {
            "session_id": started.session_id,
            "evse_id": evse_id,
            **outcome_json(started.outcome, viewer(req, self._charging.session_driver)),
        }

    def on_post_stop(self, req: falcon.Request, resp: falcon.Response, evse_id: str) -> None:
        json_body(req, {})
        outcome = self._charging.stop(caller(req), evse_id)
        resp.media = {
            "evse_id": evse_id,
            **outcome_json(outcome, viewer(req, self._charging.session_driver)),
        }


@falcon.before(require("operator"))
class MaintenanceResource:
    """``PUT /evses/{evse_id}/maintenance`` ``{"enabled": bool}`` (operators)."""

    def __init__(self, charging: Charging) -> None:
        self._charging = charging

    def on_put(self, req: falcon.Request, resp: falcon.Response, evse_id: str) -> None:
        body = json_body(req, {"enabled": bool}, required=("enabled",))
        outcome = self._charging.set_maintenance(caller(req), evse_id, body["enabled"])
        resp.media = {
            "evse_id": evse_id,
            **outcome_json(outcome, viewer(req, self._charging.session_driver)),
        }


@falcon.before(require())
class MySessionsResource:
    """``GET /me/sessions``: the caller's charging history, newest first."""

    def __init__(self, sessions: Any, sites: Any = None) -> None:
        self._sessions = sessions
        self._sites = sites

    def _site_limits_kw(self) -> dict[str, float]:
        """EVSE id -> the limit its site's actor last gave it (smart charging), in kW."""
        if self._sites is None:
            return {}
        limits: dict[str, float] = {}
        for site in self._sites.all():
            for evse_id, watts in ((site.live or {}).get("evse_limits_w") or {}).items():
                limits[evse_id] = round(watts / 1000, 1)
        return limits

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        limit = req.get_param_as_int("limit", default=50, min_value=1, max_value=200)
        rows = self._sessions.by_driver(principal(req).user_id, limit=limit)
        site_kw = self._site_limits_kw() if any(s.ended_at is None for s in rows) else {}
        resp.media = {
            "sessions": [
                {
                    "id": s.id,
                    "evse_id": s.evse_id,
                    "station_id": s.station_id,
                    "started_at": s.started_at,
                    "ended_at": s.ended_at,
                    "energy_wh": round(s.energy_wh, 1),
                    "peak_power_w": round(s.peak_power_w, 1),
                    "end_reason": s.end_reason,
                    "open": s.ended_at is None,
                    "site_limit_kw": site_kw.get(s.evse_id) if s.ended_at is None else None,
                }
                for s in rows
            ]
        }


@falcon.before(require())
class MyNotificationsResource:
    """``GET /me/notifications``: newest first."""

    def __init__(self, notifications: Any) -> None:
        self._notifications = notifications

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        limit = req.get_param_as_int("limit", default=50, min_value=1, max_value=200)
        rows = self._notifications.for_user(principal(req).user_id, limit=limit)
        resp.media = {
            "notifications": [
                {
                    "id": n.id,
                    "kind": n.kind,
                    "message": n.message,
                    "data": n.data,
                    "created_at": n.created_at,
                    "read": n.read_at is not None,
                }
                for n in rows
            ]
        }
