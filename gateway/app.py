"""The Falcon application: ``create_app(csms)`` for tests, ``GatewayServer`` for gunicorn.

Resources are small noun classes with the CSMS injected; domain errors are
mapped to HTTP statuses once, here (unknown EVSE 404, actor down 503, station
time-out 504), and every error body is JSON with a ``reason``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import falcon
import falcon.asgi

from actors.alert_log import AlertLog
from actors.system import Csms
from gateway import errors
from gateway.account_mail import AccountMail
from gateway.alerts_api import AlertAckResource, AlertsResource
from gateway.api import (
    AuthResource,
    EvseActionResource,
    EvseInfoResource,
    MaintenanceResource,
    MyNotificationsResource,
    MySessionsResource,
    NearestResource,
    ReservationResource,
    viewer,
)
from gateway.asgi import AsgiRoutes, AsyncMiddleware, LiveStreams, Offload
from gateway.auth import Authenticator, LocalAuthenticator
from gateway.credentials_api import StationCredentialResource, StationCredentialsResource
from gateway.events import AsyncEventStreamResource, EventStreamResource
from gateway.headers import SecurityHeaders, page_csp
from gateway.id_tags_api import add_id_tag_routes
from gateway.login_guard import LoginGuard
from gateway.map_tiles import MapTiles
from gateway.metrics import MetricsSummaryResource, PrometheusResource
from gateway.openapi import OpenApiResource
from gateway.operator_api import add_operator_routes
from gateway.ratelimit import SlidingWindowLimiter
from gateway.security import SAFE_METHODS, Authentication, TransportPolicy
from gateway.sites_api import (
    DepartureResource,
    SiteLimitResource,
    SiteResource,
    SitesResource,
)
from gateway.static import add_static_routes
from gateway.stations import StationProvisioner
from gateway.views import ANONYMOUS, evse_json, station_json
from storage.errors import (
    UnknownEvseError,
)

__all__ = ["create_app"]

log = logging.getLogger(__name__)

API = "/api/v1"
INFO_LIMIT = (30, 60.0)
"""Live ``info`` round trips per user: 30 a minute (a person never needs that many)."""


def _session_driver(csms: Csms) -> Callable[[str], str | None]:
    """A session's driver, from the CSMS's memory when a signed-in read asks (anonymous
    reads never do: a read model alone serves them)."""
    return lambda session_id: csms.charging.session_driver(session_id)


class HealthResource:
    def __init__(self, csms: Csms, mqtt_connected: Any = None) -> None:
        self._csms = csms
        self._connected = mqtt_connected

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        mqtt_up = self._connected.is_set() if self._connected is not None else None
        evses = self._csms.view.evses()
        resp.media = {
            "status": "ok",
            "mqtt_connected": mqtt_up,
            "stations": len(self._csms.view.stations()),
            "evses": len(evses),
        }


class StationsResource:
    """The whole fleet. The encoded bodies of anonymous and operator reads (the same for
    everyone of each) are reused while the view is unchanged and at most ``max_age_s`` old
    (``last_report_age_s`` is then that much stale at worst); a driver's is made for them."""

    def __init__(self, csms: Csms, max_age_s: float = 0.5) -> None:
        self._csms = csms
        self._driver_of = _session_driver(csms)
        self._max_age_s = max_age_s
        self._cached: dict[bool, tuple[int, float, bytes]] = {}  # operator? -> body

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        view = self._csms.view
        now = view.now()
        who = viewer(req, self._driver_of)
        shared = who is ANONYMOUS or who.operator
        version = getattr(view, "version", None)
        cached = self._cached.get(who.operator) if shared else None
        if (
            cached is not None
            and version is not None
            and cached[0] == version
            and 0 <= now - cached[1] < self._max_age_s
        ):
            body = cached[2]
        else:
            reservations = view.reservations()  # one lock for the whole listing
            stations = [station_json(s, now, reservations.get, who) for s in view.stations()]
            body = json.dumps({"stations": stations}, separators=(",", ":")).encode()
            if version is not None and shared:
                self._cached[who.operator] = (version, now, body)
        resp.content_type = falcon.MEDIA_JSON
        resp.data = body


class StationResource:
    def __init__(self, csms: Csms) -> None:
        self._csms = csms
        self._driver_of = _session_driver(csms)

    def on_get(self, req: falcon.Request, resp: falcon.Response, station_id: str) -> None:
        view = self._csms.view.station(station_id)
        if view is None:
            raise falcon.HTTPNotFound(description=f"unknown station {station_id!r}")
        resp.media = station_json(
            view,
            self._csms.view.now(),
            self._csms.view.reservation,
            viewer(req, self._driver_of),
        )


class EvseResource:
    def __init__(self, csms: Csms) -> None:
        self._csms = csms
        self._driver_of = _session_driver(csms)

    def on_get(self, req: falcon.Request, resp: falcon.Response, evse_id: str) -> None:
        view = self._csms.view.evse(evse_id)
        if view is None:
            raise UnknownEvseError(f"unknown EVSE {evse_id!r}")
        now = self._csms.view.now()
        reservation = self._csms.view.reservation(evse_id)
        resp.media = evse_json(view, now, reservation, viewer(req, self._driver_of))


def _error_serializer(req: falcon.Request, resp: falcon.Response, exc: falcon.HTTPError) -> None:
    resp.content_type = falcon.MEDIA_JSON
    resp.text = json.dumps(
        {"status": exc.status_code, "title": exc.title, "reason": exc.description or exc.title}
    )


def create_app(
    csms: Csms,
    *,
    mqtt_connected: Any = None,
    auth: Authenticator | None = None,
    storage: Any = None,
    https_base: str | None = None,
    http_base: str | None = None,
    login_limits: tuple[int, int] = (30, 5),
    signup_limits: tuple[int, float] = (10, 3600.0),
    info_limit: tuple[int, float] = INFO_LIMIT,
    mail: AccountMail | None = None,
    csms_data_dir: Path | None = None,
    asgi: bool = False,
    threads: int = 128,
    map_tiles: MapTiles | None = None,
) -> falcon.App:
    """The WSGI app, or with ``asgi`` the ASGI app (what the gunicorn workers serve:
    ``gateway.asgi``). Without ``auth`` only the public reads are served.

    ``login_limits``: (attempts per minute per client address, wrong passwords per account
    and address before the backoff, ``gateway.login_guard``); ``signup_limits``: (sign-ups and
    reset requests, per that many seconds) per address; ``info_limit``: live info requests
    per user and window (seconds); ``mail``: sign-up confirmation and password reset by mail
    (``gateway.account_mail``); ``http_base``/``https_base``: this instance's URLs, for the
    HTTPS redirects and ``/openapi.json`` (else the request's own); ``map_tiles``: where the
    pages' maps get tiles (``gateway.map_tiles``; default OpenStreetMap's), also in their CSP.
    """
    tiles = map_tiles or MapTiles()
    middleware: list[Any] = [
        SecurityHeaders(page_csp(tiles.img_sources())),
        TransportPolicy(https_base),
    ]
    if auth is not None:
        middleware.append(Authentication(auth))
    routes: Any
    streams: LiveStreams | None = None
    if asgi:
        offload = Offload(threads)
        asgi_app = falcon.asgi.App(
            cors_enable=False,
            middleware=[
                AsyncMiddleware(m, offload, SAFE_METHODS if isinstance(m, Authentication) else None)
                for m in middleware
            ],
        )
        routes = AsgiRoutes(asgi_app, offload)
        streams = LiveStreams(csms.hub)
        app: falcon.App = asgi_app
    else:
        app = routes = falcon.App(cors_enable=False, middleware=middleware)
    app.req_options.strip_url_path_trailing_slash = True
    app.set_error_serializer(_error_serializer)
    errors.install(app)
    # Reads of memory only (the read model, the health): on the ASGI app's loop, no thread.
    read = {"inline": True} if asgi else {}
    routes.add_route("/healthz", HealthResource(csms, mqtt_connected), **read)
    routes.add_route("/openapi.json", OpenApiResource(http_base, https_base), **read)
    routes.add_route("/metrics", PrometheusResource(csms.metrics))  # public: Prometheus scrapes
    add_static_routes(routes, https_base, tiles=tiles)
    routes.add_route(f"{API}/stations", StationsResource(csms), **read)
    routes.add_route(f"{API}/stations/{{station_id}}", StationResource(csms), **read)
    nearest = NearestResource(csms.view, _session_driver(csms))
    routes.add_route(f"{API}/evses/nearest", nearest, **read)
    routes.add_route(f"{API}/evses/{{evse_id}}", EvseResource(csms), **read)
    if auth is None:
        return app
    shared = getattr(storage, "login_failures", None)  # SQL storage: one count for all workers
    guard = LoginGuard(
        SlidingWindowLimiter(login_limits[0], 60.0),
        free_failures=login_limits[1],
        shared=shared,
        clock=time.time if shared is not None else time.monotonic,
    )
    signups = SlidingWindowLimiter(signup_limits[0], signup_limits[1])
    auth_resource = AuthResource(auth, guard, signups, mail)
    for action in ("register", "login", "refresh", "logout", "reset", "confirm"):
        routes.add_route(f"{API}/auth/{action}", auth_resource, suffix=action)
    routes.add_route(f"{API}/auth/reset/confirm", auth_resource, suffix="reset_confirm")
    charging = csms.charging
    info_per_user = SlidingWindowLimiter(info_limit[0], info_limit[1])
    routes.add_route(f"{API}/evses/{{evse_id}}/info", EvseInfoResource(charging, info_per_user))
    routes.add_route(
        f"{API}/evses/{{evse_id}}/reservation", ReservationResource(charging, csms.view)
    )
    actions = EvseActionResource(charging)
    routes.add_route(f"{API}/evses/{{evse_id}}/start", actions, suffix="start")
    routes.add_route(f"{API}/evses/{{evse_id}}/stop", actions, suffix="stop")
    routes.add_route(f"{API}/evses/{{evse_id}}/maintenance", MaintenanceResource(charging))
    if storage is not None:
        routes.add_route(
            f"{API}/me/sessions",
            MySessionsResource(storage.sessions, getattr(storage, "sites", None)),
        )
        routes.add_route(f"{API}/me/notifications", MyNotificationsResource(storage.notifications))
        routes.add_route(
            f"{API}/metrics/summary", MetricsSummaryResource(storage.metrics, csms.view)
        )
    add_operator_routes(routes, storage, csms.view, accounts=isinstance(auth, LocalAuthenticator))
    add_id_tag_routes(routes, storage)
    if hasattr(storage, "alerts"):  # the alert log: read here, acked by the node's log
        acker = getattr(csms, "alerts", None) or AlertLog(storage.alerts, csms.hub)
        routes.add_route(f"{API}/alerts", AlertsResource(storage.alerts))
        routes.add_route(f"{API}/alerts/{{alert_id}}/ack", AlertAckResource(acker))
    if hasattr(storage, "station_credentials"):  # SQL storage (not Firebase's user data)
        # The broker's files are rewritten only with a data dir (where the broker reads them).
        provisioner = StationProvisioner(storage, csms_data_dir)
        routes.add_route(f"{API}/station-credentials", StationCredentialsResource(provisioner))
        routes.add_route(
            f"{API}/station-credentials/{{station_id}}", StationCredentialResource(provisioner)
        )
        routes.add_route(f"{API}/sites", SitesResource(storage.sites))
        routes.add_route(f"{API}/sites/{{site_id}}", SiteResource(storage.sites))
        routes.add_route(f"{API}/sites/{{site_id}}/limit", SiteLimitResource(storage.sites))
        routes.add_route(
            f"{API}/me/sessions/{{session_id}}/departure",
            DepartureResource(
                storage.sessions,
                storage.sites,
                lambda: int(time.time() * 1000),
                charging.session_driver,
            ),
        )
    if streams is not None:  # coroutines on the loop, not threads
        app.add_route(f"{API}/me/events", AsyncEventStreamResource(streams, everything=False))
        app.add_route(f"{API}/events", AsyncEventStreamResource(streams, everything=True))
    else:
        routes.add_route(f"{API}/me/events", EventStreamResource(csms.hub, everything=False))
        routes.add_route(f"{API}/events", EventStreamResource(csms.hub, everything=True))
    return app
