"""The OpenAPI 3.0.3 description of the HTTP API, served at ``/openapi.json``.

Written by hand from :mod:`gateway.app`, :mod:`gateway.api`, :mod:`gateway.security`,
:mod:`gateway.events` and :mod:`gateway.views`; ``tests/test_openapi.py`` checks that every
route is documented (and nothing else), and fuzzes the API against this document with
schemathesis. Change both together.

Shapes that can be ``null`` are written inline with ``nullable: true`` (OpenAPI 3.0 ignores
``nullable`` next to a ``$ref``).
"""

from __future__ import annotations

from typing import Any

import falcon

from gateway.auth_model import MAX_PASSWORD_CHARS, MIN_PASSWORD_CHARS
from gateway.security import MAX_BODY_BYTES
from protocol import CommandName, EvseStatus, StopReason

__all__ = ["OPENAPI", "OpenApiResource"]

API = "/api/v1"
STATION_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
"""Station ids, as protocol v2 allows them (``protocol.valid_station_id``): no . or :."""
EVSE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}\.[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"
"""EVSE ids: the station's id, a dot, the station's own EVSE id (``protocol.evse_key``),
so two stations that both name an EVSE ``1`` never collide."""

HTTPS_SERVER = {
    "url": "https://127.0.0.1:8443",
    "description": "HTTPS: logins, writes and every call that carries a token",
}
HTTP_SERVER = {
    "url": "http://127.0.0.1:8080",
    "description": "plain HTTP: public reads without a token only",
}


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {**schema, "nullable": True}


def _obj(properties: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """An object whose every listed property is always present (possibly ``null``)."""
    return {"type": "object", "required": list(properties), "properties": properties, **extra}


STRING = {"type": "string"}
NUMBER = {"type": "number"}
INTEGER = {"type": "integer"}
BOOLEAN = {"type": "boolean"}
EPOCH_MS = {"type": "integer", "description": "epoch milliseconds, UTC"}
STATUS = {"type": "string", "enum": [str(s) for s in EvseStatus]}

RESERVATION_COUNT = _obj(
    {
        "id": STRING,
        "expires_at": EPOCH_MS,
        "remaining_s": {"type": "number", "minimum": 0},
    },
    description="A reservation's countdown, as the CSMS keeps it.",
)

EVSE = _obj(
    {
        "id": STRING,
        "station_id": STRING,
        "status": STATUS,
        "soc": _nullable({"type": "number", "description": "state of charge, %"}),
        "power_w": NUMBER,
        "energy_wh": {"type": "number", "description": "the meter reading"},
        "max_power_w": NUMBER,
        "connector": {"type": "string", "example": "Type2"},
        "session": _nullable(
            _obj(
                {
                    "id": STRING,
                    "open": BOOLEAN,
                    "energy_wh": {"type": "number", "description": "delivered in this session"},
                    "target_soc": _nullable(NUMBER),
                    "stop_reason": _nullable(
                        {"type": "string", "enum": [str(r) for r in StopReason]}
                    ),
                }
            )
        ),
        "reservation_id": _nullable({"type": "string", "description": "as the station reports it"}),
        "reservation": _nullable(RESERVATION_COUNT),
        "maintenance": BOOLEAN,
        "maintenance_pending": {
            "type": "boolean",
            "description": "maintenance asked for; it starts when the running session ends",
        },
        "last_report_age_s": {"type": "number", "minimum": 0},
        "alert": _nullable({"type": "string", "description": "an operator alert, e.g. Faulted"}),
    },
    description="An EVSE as the CSMS last heard of it. Status names are OCPP 1.6, plus Offline.",
)

OUTCOME_PROPERTIES: dict[str, Any] = {
    "command": {"type": "string", "enum": [str(c) for c in CommandName]},
    "accepted": BOOLEAN,
    "reason": _nullable({"type": "string", "description": "why the station refused"}),
    "evse": _nullable(
        _obj(
            {
                "id": STRING,
                "status": STATUS,
                "soc": _nullable(NUMBER),
                "power_w": NUMBER,
                "energy_wh": NUMBER,
                "session_id": _nullable(STRING),
                "session_energy_wh": NUMBER,
                "maintenance": BOOLEAN,
                "maintenance_pending": BOOLEAN,
                "reservation_id": _nullable(STRING),
            },
            description="The EVSE as the station answered (live, not the CSMS's view).",
        )
    ),
}

_TOTALS = {"energy_wh": NUMBER, "sessions": {"type": "integer", "minimum": 0}}
METRICS_SUMMARY = _obj(
    {
        "energy_today_wh": {"type": "number", "description": "sessions started today (UTC)"},
        "sessions_today": {"type": "integer", "minimum": 0},
        "energy_by_day": {
            "type": "array",
            "description": "the last 30 UTC days, oldest first; a session counts on the day"
            " it started",
            "items": _obj({"day": {"type": "string", "format": "date"}, **_TOTALS}),
        },
        "energy_by_station": {
            "type": "array",
            "description": "stations with sessions in those 30 days, most energy first",
            "items": _obj({"station_id": STRING, **_TOTALS}),
        },
        "average_duration_s": _nullable(
            {"type": "number", "description": "of the ended sessions in those 30 days"}
        ),
        "utilisation": {
            "type": "array",
            "description": "every EVSE: its share of the last 24 h with a session open",
            "items": _obj(
                {"evse_id": STRING, "percent": {"type": "number", "minimum": 0, "maximum": 100}}
            ),
        },
        "window": _obj(
            {
                "now": EPOCH_MS,
                "days": {"type": "integer", "example": 30},
                "days_from": {**EPOCH_MS, "description": "midnight UTC of the oldest day"},
                "utilisation_from": EPOCH_MS,
            }
        ),
    },
    description="Energy, sessions and utilisation, from the stored sessions.",
)

SCHEMAS: dict[str, Any] = {
    "Error": _obj(
        {
            "status": {"type": "integer", "example": 404},
            "title": {"type": "string", "example": "404 Not Found"},
            "reason": {"type": "string", "example": "unknown EVSE 'x'"},
        },
        description="Every error body.",
    ),
    "Health": _obj(
        {
            "status": {"type": "string", "enum": ["ok"]},
            "mqtt_connected": _nullable(
                {"type": "boolean", "description": "null when the gateway cannot tell"}
            ),
            "stations": {"type": "integer", "minimum": 0},
            "evses": {"type": "integer", "minimum": 0},
        }
    ),
    "Evse": EVSE,
    "Station": _obj(
        {
            "id": STRING,
            "name": STRING,
            "lat": NUMBER,
            "lon": NUMBER,
            "online": BOOLEAN,
            "evses": {"type": "array", "items": _ref("Evse")},
        }
    ),
    "StationList": _obj({"stations": {"type": "array", "items": _ref("Station")}}),
    "NearbyEvse": {
        "allOf": [
            _ref("Evse"),
            _obj(
                {
                    "distance_km": {"type": "number", "minimum": 0},
                    "station_name": STRING,
                    "lat": NUMBER,
                    "lon": NUMBER,
                }
            ),
        ],
        "description": "An EVSE with its station's name and position, and how far it is.",
    },
    "NearbyEvseList": _obj(
        {
            "evses": {
                "type": "array",
                "items": _ref("NearbyEvse"),
                "description": "nearest first",
            }
        }
    ),
    "Credentials": {
        "type": "object",
        "required": ["email", "password"],
        "properties": {"email": STRING, "password": STRING},
        "description": "Unknown fields are ignored.",
    },
    "Registration": {
        "type": "object",
        "required": ["email", "password"],
        "properties": {
            "email": {"type": "string", "format": "email", "maxLength": 254},
            "password": {
                "type": "string",
                "minLength": MIN_PASSWORD_CHARS,
                "maxLength": MAX_PASSWORD_CHARS,
            },
        },
        "description": "A new driver account. Unknown fields are ignored.",
    },
    "RefreshRequest": {
        "type": "object",
        "required": ["refresh_token"],
        "properties": {"refresh_token": STRING},
    },
    "Tokens": _obj(
        {
            "access_token": {"type": "string", "description": "an HS256 JWT"},
            "token_type": {"type": "string", "enum": ["Bearer"]},
            "expires_in": {"type": "integer", "description": "seconds"},
            "refresh_token": {
                "type": "string",
                "description": "single use: each refresh returns a new one",
            },
        },
        description="OAuth 2 token response (RFC 6749 section 5.1).",
    ),
    "Reservation": _obj(
        {
            **RESERVATION_COUNT["properties"],
            "evse_id": STRING,
            "created_at": EPOCH_MS,
        }
    ),
    "StartRequest": {
        "type": "object",
        "properties": {
            "target_soc": {
                "type": "number",
                "minimum": 1,
                "maximum": 100,
                "description": "stop at this state of charge, %",
            }
        },
    },
    "EmptyRequest": {
        "type": "object",
        "description": "Nothing is read from it; any fields are ignored.",
    },
    "MaintenanceRequest": {
        "type": "object",
        "required": ["enabled"],
        "properties": {"enabled": BOOLEAN},
    },
    "CommandOutcome": _obj(
        OUTCOME_PROPERTIES, description="A station's answer to a command (info: even a refusal)."
    ),
    "StartResult": _obj({"session_id": STRING, "evse_id": STRING, **OUTCOME_PROPERTIES}),
    "EvseCommandResult": _obj({"evse_id": STRING, **OUTCOME_PROPERTIES}),
    "Session": _obj(
        {
            "id": STRING,
            "evse_id": STRING,
            "station_id": STRING,
            "started_at": EPOCH_MS,
            "ended_at": _nullable(EPOCH_MS),
            "energy_wh": NUMBER,
            "peak_power_w": NUMBER,
            "end_reason": _nullable(STRING),
            "open": BOOLEAN,
        }
    ),
    "SessionList": _obj({"sessions": {"type": "array", "items": _ref("Session")}}),
    "Notification": _obj(
        {
            "id": INTEGER,
            "kind": {"type": "string", "example": "session_ended"},
            "message": STRING,
            "data": {"type": "object"},
            "created_at": EPOCH_MS,
            "read": BOOLEAN,
        }
    ),
    "NotificationList": _obj({"notifications": {"type": "array", "items": _ref("Notification")}}),
    "MetricsSummary": METRICS_SUMMARY,
    "StationCredential": _obj(
        {
            "station_id": STRING,
            "name": STRING,
            "created_at": EPOCH_MS,
            "revoked_at": _nullable(EPOCH_MS),
        }
    ),
    "StationCredentialList": _obj(
        {"stations": {"type": "array", "items": _ref("StationCredential")}}
    ),
    "NewStationCredential": _obj(
        {
            "station_id": STRING,
            "name": STRING,
            "mqtt_username": {"type": "string", "description": "the station id"},
            "password": {"type": "string", "description": "shown this once, never again"},
        }
    ),
    "StationCredentialRequest": {
        "type": "object",
        "required": ["station_id"],
        "properties": {
            "station_id": {
                "type": "string",
                "description": "1-64 of A-Z a-z 0-9 . _ -, starting alphanumeric; not 'csms'",
                "example": "st-042",
            },
            "name": STRING,
        },
    },
}


def _json(schema: dict[str, Any], description: str, **extra: Any) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": schema}},
        **extra,
    }


def _error(description: str, **extra: Any) -> dict[str, Any]:
    return _json(_ref("Error"), description, **extra)


RESPONSES: dict[str, Any] = {
    "MalformedJson": _error("Malformed JSON: the body is not JSON, or not a JSON object."),
    "BadParameter": _error("A query parameter is missing, malformed or out of range."),
    "Unauthorized": _error(
        "No bearer token where one is needed, or an invalid, malformed or expired one.",
        headers={"WWW-Authenticate": {"schema": {"type": "string", "example": "Bearer"}}},
    ),
    "Forbidden": _error(
        "'HTTPS required': a write, or any call with a token, over plain HTTP (the reason"
        " gives the HTTPS URL); or the caller may not do this."
    ),
    "HttpsRequired": _error(
        "'HTTPS required': a call with a token over plain HTTP (the reason gives the HTTPS URL)."
    ),
    "NotFound": _error("No such EVSE (or nothing of the caller's there)."),
    "Conflict": _error("The EVSE or its station refuses, with the station's reason."),
    "TooLarge": _error(f"The body is larger than {MAX_BODY_BYTES} bytes."),
    "Invalid": _error("A field is missing, of the wrong type or out of range."),
    "TooManyAttempts": _error(
        "Too many attempts from this address or for this email; retry later.",
        headers={
            "Retry-After": {
                "required": True,
                "schema": {"type": "integer", "minimum": 0},
                "description": "seconds",
            }
        },
    ),
    "Unavailable": _error("The CSMS, or the EVSE's actor, is not running; try again."),
    "Timeout": _error("The station did not answer the command in time."),
}


def _r(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/responses/{name}"}


PUBLIC_ERRORS = {"401": _r("Unauthorized"), "403": _r("HttpsRequired")}
"""A public read still refuses an invalid token, and any token over plain HTTP."""
BODY_ERRORS = {"400": _r("MalformedJson"), "413": _r("TooLarge")}
AUTHED = {"401": _r("Unauthorized"), "403": _r("Forbidden")}
COMMAND_ERRORS = {"404": _r("NotFound"), "503": _r("Unavailable"), "504": _r("Timeout")}

BEARER: list[dict[str, list[str]]] = [{"bearerAuth": []}]
STREAM_AUTH: list[dict[str, list[str]]] = [{"bearerAuth": []}, {"accessTokenQuery": []}]


def _id_param(name: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": {"type": "string", "pattern": EVSE_ID_PATTERN, "example": "st-001.1"},
    }


EVSE_ID = _id_param("evse_id", "an EVSE id: station id, a dot, the station's EVSE id (st-001.1)")
STATION_ID = {
    **_id_param("station_id", "a station id, e.g. st-001"),
    "schema": {"type": "string", "pattern": STATION_ID_PATTERN, "example": "st-001"},
}


def _limit(default: int, maximum: int) -> dict[str, Any]:
    return {
        "name": "limit",
        "in": "query",
        "required": False,
        "schema": {"type": "integer", "minimum": 1, "maximum": maximum, "default": default},
    }


def _body(schema: dict[str, Any], *, required: bool = True) -> dict[str, Any]:
    return {"required": required, "content": {"application/json": {"schema": schema}}}


def _public(
    operation_id: str, summary: str, ok: dict[str, Any], *, tags: list[str], **extra: Any
) -> dict[str, Any]:
    return {
        "operationId": operation_id,
        "summary": summary,
        "tags": tags,
        "security": [],
        "responses": {"200": ok, **PUBLIC_ERRORS, **extra.pop("responses", {})},
        **extra,
    }


def _secure(
    operation_id: str,
    summary: str,
    responses: dict[str, Any],
    *,
    tags: list[str],
    security: list[dict[str, list[str]]] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    return {
        "operationId": operation_id,
        "summary": summary,
        "tags": tags,
        "servers": [HTTPS_SERVER],
        "security": BEARER if security is None else security,
        "responses": responses,
        **extra,
    }


def _auth_op(
    operation_id: str, summary: str, ok: tuple[str, dict[str, Any]], body: str, **errors: Any
) -> dict[str, Any]:
    return _secure(
        operation_id,
        summary,
        {
            ok[0]: ok[1],
            **BODY_ERRORS,
            "401": _r("Unauthorized"),
            "403": _r("HttpsRequired"),
            "422": _r("Invalid"),
            **errors,
        },
        tags=["auth"],
        security=[],
        requestBody=_body(_ref(body)),
    )


SSE_DESCRIPTION = (
    "Server-Sent Events. Browsers cannot set headers on an EventSource, so the token may come"
    " as `?access_token=`. Each event is `id:`, `event: <kind>` and `data: <JSON>`; a"
    " `: ping` comment comes every 15 s, a `lagged` event when the client fell behind (it"
    " lost its oldest events); the stream ends after 5 minutes and `retry: 2000` makes the"
    " browser reconnect."
)
SSE_OK = {
    "description": "An endless event stream.",
    "content": {"text/event-stream": {"schema": {"type": "string"}}},
}
ACCESS_TOKEN_PARAM = {
    "name": "access_token",
    "in": "query",
    "required": False,
    "description": "the access token, for clients that cannot send an Authorization header",
    "schema": {"type": "string"},
}

TOKEN_OK = _json(_ref("Tokens"), "Logged in.")

PATHS: dict[str, Any] = {
    "/healthz": {
        "get": _public(
            "getHealth",
            "Liveness, whether MQTT is connected, and the fleet size",
            _json(_ref("Health"), "The gateway is up."),
            tags=["public"],
        )
    },
    "/openapi.json": {
        "get": _public(
            "getOpenApi",
            "This document",
            _json({"type": "object"}, "The OpenAPI 3.0.3 document."),
            tags=["public"],
        )
    },
    "/metrics": {
        "get": _public(
            "getMetrics",
            "Prometheus metrics (no token: scrapers use plain HTTP)",
            {
                "description": "The Prometheus text exposition format: EVSEs by status, open"
                " sessions and event streams, MQTT messages in/out/malformed, command round"
                " trips and time-outs by command, actor restarts.",
                "content": {"text/plain": {"schema": {"type": "string"}}},
            },
            tags=["public"],
        )
    },
    f"{API}/metrics/summary": {
        "get": _secure(
            "metricsSummary",
            "Energy and sessions per day and per station, utilisation per EVSE (operators)",
            {
                "200": _json(_ref("MetricsSummary"), "The summary."),
                "401": _r("Unauthorized"),
                "403": _error("'HTTPS required', or the caller is not an operator."),
            },
            tags=["operators"],
        )
    },
    f"{API}/stations": {
        "get": _public(
            "listStations",
            "Every station with its EVSEs, sorted by id",
            _json(_ref("StationList"), "The fleet."),
            tags=["public"],
        )
    },
    f"{API}/stations/{{station_id}}": {
        "get": _public(
            "getStation",
            "One station with its EVSEs",
            _json(_ref("Station"), "The station."),
            tags=["public"],
            parameters=[STATION_ID],
            responses={"404": _error("No such station.")},
        )
    },
    f"{API}/evses/nearest": {
        "get": _public(
            "nearestEvses",
            "EVSEs by great-circle distance from a point, nearest first",
            _json(_ref("NearbyEvseList"), "Up to `limit` EVSEs."),
            tags=["public"],
            parameters=[
                {
                    "name": "lat",
                    "in": "query",
                    "required": True,
                    "schema": {"type": "number", "minimum": -90, "maximum": 90},
                },
                {
                    "name": "lon",
                    "in": "query",
                    "required": True,
                    "schema": {"type": "number", "minimum": -180, "maximum": 180},
                },
                _limit(10, 100),
                {
                    "name": "available",
                    "in": "query",
                    "required": False,
                    "description": "only EVSEs that are Available and not reserved",
                    "schema": {"type": "boolean", "default": False},
                },
            ],
            responses={"400": _r("BadParameter")},
        )
    },
    f"{API}/evses/{{evse_id}}": {
        "get": _public(
            "getEvse",
            "One EVSE, as the CSMS last heard of it",
            _json(_ref("Evse"), "The EVSE."),
            tags=["public"],
            parameters=[EVSE_ID],
            responses={"404": _r("NotFound")},
        )
    },
    f"{API}/auth/register": {
        "post": _auth_op(
            "register",
            "Create a driver account and log in",
            ("201", _json(_ref("Tokens"), "Registered and logged in.")),
            "Registration",
            **{
                "409": _error("An account already exists for this email."),
                "422": _error(
                    "A field is missing or not a string, the email is not plausible, or the"
                    f" password is not {MIN_PASSWORD_CHARS} to {MAX_PASSWORD_CHARS} characters."
                ),
                "429": _r("TooManyAttempts"),
            },
        )
    },
    f"{API}/auth/login": {
        "post": _auth_op(
            "login",
            "Exchange an email and password for tokens",
            ("200", TOKEN_OK),
            "Credentials",
            **{
                "401": _error(
                    "Wrong email or password (one message for both), or an invalid"
                    " Authorization header.",
                    headers={"WWW-Authenticate": {"schema": {"type": "string"}}},
                ),
                "429": _r("TooManyAttempts"),
            },
        )
    },
    f"{API}/auth/refresh": {
        "post": _auth_op(
            "refresh",
            "Exchange a refresh token for new tokens (the old one stops working)",
            ("200", _json(_ref("Tokens"), "New tokens.")),
            "RefreshRequest",
            **{
                "401": _error(
                    "Unknown, expired, revoked or reused refresh token (a reuse revokes"
                    " every token of its login).",
                    headers={"WWW-Authenticate": {"schema": {"type": "string"}}},
                )
            },
        )
    },
    f"{API}/auth/logout": {
        "post": _auth_op(
            "logout",
            "End the login the refresh token belongs to",
            ("204", {"description": "Logged out."}),
            "RefreshRequest",
            **{
                "401": _error(
                    "Unknown refresh token.",
                    headers={"WWW-Authenticate": {"schema": {"type": "string"}}},
                )
            },
        )
    },
    f"{API}/evses/{{evse_id}}/info": {
        "get": _secure(
            "evseInfo",
            "A live round trip to the station (not the CSMS's cached view)",
            {
                "200": _json(_ref("CommandOutcome"), "The station's answer, even a refusal."),
                **AUTHED,
                **COMMAND_ERRORS,
            },
            tags=["drivers"],
            parameters=[EVSE_ID],
        )
    },
    f"{API}/evses/{{evse_id}}/reservation": {
        "post": _secure(
            "reserve",
            "Reserve an Available EVSE (the countdown is the CSMS's, 15 minutes by default)",
            {
                "201": _json(_ref("Reservation"), "Reserved."),
                **BODY_ERRORS,
                **AUTHED,
                **COMMAND_ERRORS,
                "409": _error("Not Available, already reserved, or the station refused."),
            },
            tags=["drivers"],
            parameters=[EVSE_ID],
            requestBody=_body(_ref("EmptyRequest"), required=False),
        ),
        "delete": _secure(
            "cancelReservation",
            "Cancel the caller's reservation (operators: anyone's)",
            {
                "204": {"description": "Cancelled."},
                **AUTHED,
                **COMMAND_ERRORS,
                "404": _error("The caller holds no reservation on this EVSE."),
            },
            tags=["drivers"],
            parameters=[EVSE_ID],
        ),
    },
    f"{API}/evses/{{evse_id}}/start": {
        "post": _secure(
            "startCharging",
            "Start a session (the caller's reservation is used; someone else's is released)",
            {
                "201": _json(_ref("StartResult"), "The station started the session."),
                **BODY_ERRORS,
                **AUTHED,
                **COMMAND_ERRORS,
                "409": _r("Conflict"),
                "422": _error("target_soc is not a number from 1 to 100."),
            },
            tags=["drivers"],
            parameters=[EVSE_ID],
            requestBody=_body(_ref("StartRequest"), required=False),
        )
    },
    f"{API}/evses/{{evse_id}}/stop": {
        "post": _secure(
            "stopCharging",
            "Stop the running session (drivers: only their own)",
            {
                "200": _json(_ref("EvseCommandResult"), "The station stopped the session."),
                **BODY_ERRORS,
                "401": _r("Unauthorized"),
                "403": _error("'HTTPS required', or the session is not the caller's."),
                **COMMAND_ERRORS,
                "404": _error("No such EVSE, or (drivers) no session running there."),
                "409": _error("(Operators) no session running, or the station refused."),
            },
            tags=["drivers"],
            parameters=[EVSE_ID],
            requestBody=_body(_ref("EmptyRequest"), required=False),
        )
    },
    f"{API}/evses/{{evse_id}}/maintenance": {
        "put": _secure(
            "setMaintenance",
            "Switch maintenance on or off (operators); a running session finishes first",
            {
                "200": _json(_ref("EvseCommandResult"), "The station accepted."),
                **BODY_ERRORS,
                "401": _r("Unauthorized"),
                "403": _error("'HTTPS required', or the caller is not an operator."),
                **COMMAND_ERRORS,
                "409": _r("Conflict"),
                "422": _r("Invalid"),
            },
            tags=["operators"],
            parameters=[EVSE_ID],
            requestBody=_body(_ref("MaintenanceRequest")),
        )
    },
    f"{API}/station-credentials": {
        "get": _secure(
            "listStationCredentials",
            "Every station's broker credentials, revoked ones too, never a password (operators)",
            {
                "200": _json(_ref("StationCredentialList"), "The stations."),
                "401": _r("Unauthorized"),
                "403": _error("'HTTPS required', or the caller is not an operator."),
            },
            tags=["operators"],
        ),
        "post": _secure(
            "addStationCredentials",
            "Provision a station on the broker; its password is in this answer only (operators)",
            {
                "201": _json(_ref("NewStationCredential"), "Provisioned."),
                **BODY_ERRORS,
                "401": _r("Unauthorized"),
                "403": _error("'HTTPS required', or the caller is not an operator."),
                "409": _error("The station already has credentials: revoke them first."),
                "422": _r("Invalid"),
            },
            tags=["operators"],
            requestBody=_body(_ref("StationCredentialRequest")),
        ),
    },
    f"{API}/station-credentials/{{station_id}}": {
        "delete": _secure(
            "revokeStationCredentials",
            "Revoke a station's credentials: the broker refuses it from now on (operators)",
            {
                "204": {"description": "Revoked."},
                "401": _r("Unauthorized"),
                "403": _error("'HTTPS required', or the caller is not an operator."),
                "404": _error("The station has no active credentials."),
            },
            tags=["operators"],
            parameters=[STATION_ID],
        )
    },
    f"{API}/me/sessions": {
        "get": _secure(
            "mySessions",
            "The caller's charging sessions, newest first",
            {
                "200": _json(_ref("SessionList"), "The sessions."),
                "400": _r("BadParameter"),
                **AUTHED,
            },
            tags=["drivers"],
            parameters=[_limit(50, 200)],
        )
    },
    f"{API}/me/notifications": {
        "get": _secure(
            "myNotifications",
            "The caller's notifications, newest first",
            {
                "200": _json(_ref("NotificationList"), "The notifications."),
                "400": _r("BadParameter"),
                **AUTHED,
            },
            tags=["drivers"],
            parameters=[_limit(50, 200)],
        )
    },
    f"{API}/me/events": {
        "get": _secure(
            "myEvents",
            "Live events of the caller's sessions (`session`) and notifications (`notification`)",
            {"200": SSE_OK, **AUTHED},
            tags=["drivers"],
            security=STREAM_AUTH,
            parameters=[ACCESS_TOKEN_PARAM],
            description=SSE_DESCRIPTION,
        )
    },
    f"{API}/events": {
        "get": _secure(
            "allEvents",
            "Every live event, for operators: `evse`, `station`, `alert`, `notification`",
            {
                "200": SSE_OK,
                "401": _r("Unauthorized"),
                "403": _error("'HTTPS required', or the caller is not an operator."),
            },
            tags=["operators"],
            security=STREAM_AUTH,
            parameters=[ACCESS_TOKEN_PARAM],
            description=SSE_DESCRIPTION,
        )
    },
}

OPENAPI: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {
        "title": "smartcharge CSMS API",
        "version": "1.0.0",
        "description": (
            "Public reads (stations, EVSEs, nearest EVSEs, health, Prometheus `/metrics`)"
            " may use plain HTTP."
            " Logins, every write and every call that carries a token must use HTTPS: over"
            " plain HTTP they are refused with 403 'HTTPS required' and the HTTPS URL in"
            " `reason`. Tokens are OAuth 2 style: a short-lived JWT access token sent as"
            " `Authorization: Bearer <token>`, and a single-use refresh token. Request bodies"
            f" are JSON objects of at most {MAX_BODY_BYTES} bytes; unknown fields are ignored,"
            " and `null` counts as absent. Every error is"
            ' `{"status": int, "title": str, "reason": str}`.'
        ),
    },
    "servers": [HTTP_SERVER, HTTPS_SERVER],
    "tags": [
        {"name": "public", "description": "reads anyone may make, over HTTP or HTTPS"},
        {"name": "auth", "description": "accounts and tokens (HTTPS)"},
        {"name": "drivers", "description": "calls with a token (HTTPS)"},
        {"name": "operators", "description": "calls with an operator's token (HTTPS)"},
    ],
    "paths": PATHS,
    "components": {
        "schemas": SCHEMAS,
        "responses": RESPONSES,
        "securitySchemes": {
            "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
            "accessTokenQuery": {
                "type": "apiKey",
                "in": "query",
                "name": "access_token",
                "description": "event streams only",
            },
        },
    },
}


class OpenApiResource:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = OPENAPI
