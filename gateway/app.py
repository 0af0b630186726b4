"""The Falcon application: ``create_app(csms)`` for tests, ``GatewayServer`` for gunicorn.

Resources are small noun classes with the CSMS injected; domain errors are
mapped to HTTP statuses once, here (unknown EVSE 404, actor down 503, station
time-out 504), and every error body is JSON with a ``reason``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import falcon

from actors.errors import (
    ActorUnavailableError,
    CommandTimeoutError,
    SmartchargeError,
    UnknownEvseError,
)
from actors.system import Csms
from gateway.views import evse_json, station_json

__all__ = ["create_app"]

log = logging.getLogger(__name__)

API = "/api/v1"


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
    def __init__(self, csms: Csms) -> None:
        self._csms = csms

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        view = self._csms.view
        now = view.now()
        resp.media = {"stations": [station_json(s, now) for s in view.stations()]}


class StationResource:
    def __init__(self, csms: Csms) -> None:
        self._csms = csms

    def on_get(self, req: falcon.Request, resp: falcon.Response, station_id: str) -> None:
        view = self._csms.view.station(station_id)
        if view is None:
            raise falcon.HTTPNotFound(description=f"unknown station {station_id!r}")
        resp.media = station_json(view, self._csms.view.now())


class EvseResource:
    def __init__(self, csms: Csms) -> None:
        self._csms = csms

    def on_get(self, req: falcon.Request, resp: falcon.Response, evse_id: str) -> None:
        view = self._csms.view.evse(evse_id)
        if view is None:
            raise UnknownEvseError(f"unknown EVSE {evse_id!r}")
        resp.media = evse_json(view, self._csms.view.now())


def _error_serializer(req: falcon.Request, resp: falcon.Response, exc: falcon.HTTPError) -> None:
    resp.content_type = falcon.MEDIA_JSON
    resp.text = json.dumps(
        {"status": exc.status_code, "title": exc.title, "reason": exc.description or exc.title}
    )


def _map(status: Callable[..., falcon.HTTPError]) -> Any:
    def handler(
        req: falcon.Request, resp: falcon.Response, ex: Exception, params: dict[str, Any]
    ) -> None:
        raise status(description=str(ex))

    return handler


def create_app(csms: Csms, *, mqtt_connected: Any = None) -> falcon.App:
    app = falcon.App(cors_enable=False)
    app.set_error_serializer(_error_serializer)
    app.add_error_handler(SmartchargeError, _map(falcon.HTTPInternalServerError))
    app.add_error_handler(UnknownEvseError, _map(falcon.HTTPNotFound))
    app.add_error_handler(ActorUnavailableError, _map(falcon.HTTPServiceUnavailable))
    app.add_error_handler(CommandTimeoutError, _map(falcon.HTTPGatewayTimeout))
    app.add_route("/healthz", HealthResource(csms, mqtt_connected))
    app.add_route(f"{API}/stations", StationsResource(csms))
    app.add_route(f"{API}/stations/{{station_id}}", StationResource(csms))
    app.add_route(f"{API}/evses/{{evse_id}}", EvseResource(csms))
    return app
