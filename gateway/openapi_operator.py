"""The operators' part of the OpenAPI document: the alert log, smart-charging sites and the
operator pages' calls (sessions, users, a station's events), as rows and schemas that
:mod:`gateway.openapi` adds to :data:`gateway.openapi_routes.ROUTES` and
:data:`gateway.openapi_schemas.SCHEMAS` (kept apart so no module grows past 400 lines)."""

from __future__ import annotations

from typing import Any

from gateway.openapi_routes import (
    API,
    EVSE_ID_PATTERN,
    SITE_ID,
    STATION_ID,
    STATION_ID_PATTERN,
    Access,
    Route,
    _done,
    _limit,
    _ok,
    _path_param,
    _query,
)
from gateway.openapi_schemas import (
    _CURSOR,
    BOOLEAN,
    EPOCH_MS,
    INTEGER,
    NUMBER,
    STRING,
    _nullable,
    _obj,
    ref,
)

__all__ = ["OPERATOR_ROUTES", "OPERATOR_SCHEMAS"]

PUBLIC, AUTH, DRIVERS, OPERATORS = Access

ALERT_ID = {
    "name": "alert_id",
    "in": "path",
    "required": True,
    "description": "an alert's id",
    "schema": {"type": "string", "pattern": r"^[0-9]{1,18}$", "example": "42"},
}
ALERT_FILTERS = (
    _query(
        "severity",
        {"type": "string", "enum": ["bad", "warn", "info", "good"]},
        description="only alerts of this severity",
    ),
    _query(
        "station",
        {"type": "string", "pattern": STATION_ID_PATTERN},
        description="only alerts about this station",
    ),
    _query(
        "unacked",
        {"type": "boolean", "default": False},
        description="only alerts nobody has acknowledged",
    ),
    _limit(50, 200),
    _query(
        "before",
        {"type": "integer", "minimum": 1},
        description="only alerts older than this id (the `next` of the previous page)",
    ),
)
CSV_OK = (
    "200",
    {
        "description": "UTF-8 CSV with a header row; text cells that a spreadsheet would run"
        " as a formula (starting with = + - @) begin with a '.",
        "content": {"text/csv": {"schema": {"type": "string"}}},
        "headers": {
            "X-Truncated": {
                "description": "true when more sessions match than this file holds",
                "schema": {"type": "string", "enum": ["true", "false"]},
            },
            "X-Next-Before": {
                "description": "with X-Truncated: the `before` of the rest",
                "schema": {"type": "string"},
            },
        },
    },
)
BEFORE = _query(
    "before",
    {"type": "string", "example": "1764000000000:3f2a"},
    description="continue after a page: its `next` (a CSV's X-Next-Before)",
)
_TIME = {"type": "string", "example": "2026-12-01T00:00:00Z"}
SESSION_FILTERS = (
    _query("station", {"type": "string", "pattern": STATION_ID_PATTERN}),
    _query("evse", {"type": "string", "pattern": EVSE_ID_PATTERN}),
    _query("driver", {"type": "string", "maxLength": 254},
           description="a driver's email or user id"),
    _query("status", {"type": "string", "enum": ["open", "closed"]}),
    _query("from", _TIME,
           description="started at or after: epoch ms or ISO 8601 (UTC unless zoned)"),
    _query("to", _TIME, description="started before: epoch ms or ISO 8601"),
)  # fmt: skip
USER_ID = _path_param("user_id", "a user's id", r"^[A-Za-z0-9_-]{1,128}$", "3f2a9c")
ACCOUNT_ERRORS: dict[str, str | dict[str, Any]] = {
    "403": "'HTTPS required', the caller is not an operator, or the account is an"
    " operator's (the caller's own included): those are managed with `smartcharge admin`.",
    "404": "No such driver account (or it was deleted).",
}


OPERATOR_ROUTES: tuple[Route, ...] = (
    # ------------------------------------------------------------------ smart charging
    Route("get", f"{API}/sites", "listSites", OPERATORS,
          summary="Smart-charging sites with their limits and what the node last decided"
          " (operators)",
          ok=_ok("SiteList", "The sites.")),
    Route("get", f"{API}/sites/{{site_id}}", "getSite", OPERATORS,
          summary="One site (operators)", ok=_ok("Site", "The site."), params=(SITE_ID,),
          errors={"404": "No such site."}),
    Route("put", f"{API}/sites/{{site_id}}", "putSite", OPERATORS,
          summary="Create or replace a site: limit, schedule, stations, EVSE bounds"
          " (operators); the node follows within a second",
          ok=_ok("Site", "Replaced."), params=(SITE_ID,), body="SiteRequest",
          errors={"201": _ok("Site", "Created.")[1], "422": "Invalid"}),
    Route("put", f"{API}/sites/{{site_id}}/limit", "setSiteLimit", OPERATORS,
          summary="Change a site's power limit (and schedule) (operators)",
          ok=_ok("Site", "The site with its new limit."), params=(SITE_ID,),
          body="SiteLimitRequest", errors={"404": "No such site.", "422": "Invalid"}),
    Route("delete", f"{API}/sites/{{site_id}}", "deleteSite", OPERATORS,
          summary="Remove a site: its EVSEs charge without a site limit (operators)",
          ok=_done("204", "Removed."), params=(SITE_ID,), errors={"404": "No such site."}),
    # ------------------------------------------------------------------ operator pages
    Route("get", f"{API}/sessions", "listSessions", OPERATORS,
          summary="Every charging session, newest first, filtered and paged (operators)",
          ok=_ok("OperatorSessionList", "A page of sessions."),
          params=(*SESSION_FILTERS, _limit(50, 200), BEFORE), errors={"400": "BadParameter"}),
    Route("get", f"{API}/sessions.csv", "exportSessions", OPERATORS,
          summary="The same sessions as CSV, at most 10,000 rows a file (operators)",
          ok=CSV_OK, params=(*SESSION_FILTERS, _limit(10_000, 10_000), BEFORE),
          errors={"400": "BadParameter"}),
    Route("get", f"{API}/users", "listDrivers", OPERATORS,
          summary="Driver accounts with their session counts, newest first (operators)",
          ok=_ok("DriverAccountList", "A page of accounts."),
          params=(
              _query("q", {"type": "string", "maxLength": 254},
                     description="part of the email address"),
              _limit(50, 200),
              BEFORE,
          ),
          errors={"400": "BadParameter"}),
    Route("post", f"{API}/users/{{user_id}}/disable", "disableDriver", OPERATORS,
          summary="Lock a driver out: no login or refresh, and their tokens stop working for"
          " writes (operators)",
          ok=_ok("DriverAccount", "Disabled (also when it already was)."), params=(USER_ID,),
          body="EmptyRequest", body_required=False, errors=ACCOUNT_ERRORS),
    Route("post", f"{API}/users/{{user_id}}/enable", "enableDriver", OPERATORS,
          summary="Let a disabled driver log in again; their old tokens stay revoked (operators)",
          ok=_ok("DriverAccount", "Enabled (also when it was not disabled)."), params=(USER_ID,),
          body="EmptyRequest", body_required=False, errors=ACCOUNT_ERRORS),
    Route("get", f"{API}/stations/{{station_id}}/events", "stationEvents", OPERATORS,
          summary="A station's recent status changes, sessions and alerts, newest first"
          " (operators)",
          ok=_ok("StationEventList", "The events."), params=(STATION_ID, _limit(50, 200)),
          errors={"400": "BadParameter", "404": "No such station."}),
    # ------------------------------------------------------------------ the alert log
    Route("get", f"{API}/alerts", "listAlerts", OPERATORS,
          summary="The operators' alert log, newest first, with filters and pages (operators)",
          ok=_ok("AlertList", "The alerts."),
          params=ALERT_FILTERS, errors={"400": "BadParameter"}),
    Route("post", f"{API}/alerts/{{alert_id}}/ack", "ackAlert", OPERATORS,
          summary="Acknowledge an alert: who (the caller's email) and when (the CSMS's clock);"
          " an alert acked before keeps its first ack (operators)",
          ok=_ok("Alert", "The alert as stored."), params=(ALERT_ID,),
          errors={"404": "No such alert."}),
)  # fmt: skip

OPERATOR_SCHEMAS: dict[str, Any] = {
    "Alert": _obj(
        {
            "id": INTEGER,
            "at": {**EPOCH_MS, "description": "when, on the CSMS's clock (never a station's)"},
            "kind": {"type": "string", "example": "station_offline"},
            "severity": {"type": "string", "enum": ["bad", "warn", "info", "good"]},
            "station_id": _nullable(STRING),
            "evse_id": _nullable(STRING),
            "message": STRING,
            "acked_by": _nullable({"type": "string", "description": "the operator's email"}),
            "acked_at": _nullable(EPOCH_MS),
        }
    ),
    "AlertList": _obj(
        {
            "alerts": {"type": "array", "items": ref("Alert")},
            "next": _nullable(
                {**INTEGER, "description": "the `before` of the next page; null: the last"}
            ),
        }
    ),
    "Site": _obj(
        {
            "id": STRING,
            "name": STRING,
            "limit_kw": NUMBER,
            "schedule": {"type": "array", "items": ref("SiteScheduleStep")},
            "timezone": STRING,
            "station_ids": {"type": "array", "items": STRING},
            "evse_limits": {"type": "object", "additionalProperties": ref("EvseBounds")},
            "updated_at": EPOCH_MS,
            "live": _nullable(
                {
                    "type": "object",
                    "description": "what the node's site actor last decided: limit_kw,"
                    " allocated_kw, measured_kw, active_sessions, paused, evse_limits_w,"
                    " commands_sent, reallocations, at",
                }
            ),
            "live_at": _nullable(EPOCH_MS),
        }
    ),
    "SiteList": _obj({"sites": {"type": "array", "items": ref("Site")}}),
    "SiteScheduleStep": _obj(
        {
            "from": {"type": "string", "pattern": "^([01][0-9]|2[0-3]):[0-5][0-9]$"},
            "limit_kw": {"type": "number", "minimum": 0, "maximum": 100000},
        }
    ),
    "EvseBounds": _obj(
        {
            "min_kw": {"type": "number", "minimum": 0.1, "maximum": 100000},
            "max_kw": {"type": "number", "minimum": 0.1, "maximum": 100000},
        }
    ),
    "SiteRequest": {
        "type": "object",
        "required": ["limit_kw"],
        "properties": {
            "name": {"type": "string", "minLength": 1, "maxLength": 100},
            "limit_kw": {"type": "number", "minimum": 0, "maximum": 100000},
            "schedule": {"type": "array", "maxItems": 48, "items": ref("SiteScheduleStep")},
            "timezone": {"type": "string", "example": "Europe/Rome"},
            "station_ids": {"type": "array", "items": STRING, "maxItems": 10000},
            "evse_limits": {"type": "object", "additionalProperties": ref("EvseBounds")},
        },
    },
    "DepartureRequest": {
        "type": "object",
        "required": ["departure_at"],
        "properties": {
            "departure_at": {
                "type": "integer",
                "description": "epoch milliseconds, UTC; within the next 48 hours",
            }
        },
    },
    "Departure": _obj({"session_id": STRING, "departure_at": EPOCH_MS}),
    "SiteLimitRequest": {
        "type": "object",
        "required": ["limit_kw"],
        "properties": {
            "limit_kw": {"type": "number", "minimum": 0, "maximum": 100000},
            "schedule": {"type": "array", "maxItems": 48, "items": ref("SiteScheduleStep")},
        },
    },
    "OperatorSession": _obj(
        {
            "id": STRING,
            "station_id": STRING,
            "evse_id": STRING,
            "driver_id": _nullable({"type": "string", "description": "null: no driver account"}),
            "driver_email": _nullable(STRING),
            "started_at": EPOCH_MS,
            "ended_at": _nullable(EPOCH_MS),
            "energy_wh": NUMBER,
            "peak_power_w": NUMBER,
            "target_soc": _nullable(NUMBER),
            "end_reason": _nullable(STRING),
            "open": BOOLEAN,
        }
    ),
    "OperatorSessionList": _obj(
        {
            "sessions": {"type": "array", "items": ref("OperatorSession")},
            "next": _nullable(_CURSOR),
        }
    ),
    "DriverAccount": _obj(
        {
            "id": STRING,
            "email": STRING,
            "created_at": EPOCH_MS,
            "confirmed": {"type": "boolean", "description": "the email address is confirmed"},
            "disabled": BOOLEAN,
            "disabled_at": _nullable(EPOCH_MS),
            "sessions": {"type": "integer", "minimum": 0, "description": "sessions recorded"},
        }
    ),
    "DriverAccountList": _obj(
        {"users": {"type": "array", "items": ref("DriverAccount")}, "next": _nullable(_CURSOR)}
    ),
    "StationEvent": _obj(
        {
            "at": EPOCH_MS,
            "kind": {
                "type": "string",
                "enum": ["status", "session_started", "session_ended", "alert"],
            },
            "evse_id": _nullable(STRING),
            "message": STRING,
            "session_id": _nullable(STRING),
            "status": _nullable({"type": "string", "description": "a status change's new one"}),
            "severity": _nullable({"type": "string", "enum": ["bad", "warn", "info", "good"]}),
        }
    ),
    "StationEventList": _obj(
        {"station_id": STRING, "events": {"type": "array", "items": ref("StationEvent")}}
    ),
    "StationCredential": _obj(
        {
            "station_id": STRING,
            "name": STRING,
            "created_at": EPOCH_MS,
            "revoked_at": _nullable(EPOCH_MS),
        }
    ),
    "StationCredentialList": _obj(
        {"stations": {"type": "array", "items": ref("StationCredential")}}
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
    # -- the operator pages (gateway/operator_api.py)
}
