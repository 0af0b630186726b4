"""The schemas and shared responses of the OpenAPI document (``components``).

:mod:`gateway.openapi` builds the document from these and from the route table in
:mod:`gateway.openapi_routes`. Written by hand from :mod:`gateway.views`, :mod:`gateway.api`
and :mod:`gateway.security`; the enums and limits come from the code, so they cannot drift.

Shapes that can be ``null`` are written inline with ``nullable: true`` (OpenAPI 3.0 ignores
``nullable`` next to a ``$ref``).
"""

from __future__ import annotations

from typing import Any

from gateway.auth_model import MAX_PASSWORD_CHARS, MIN_PASSWORD_CHARS
from gateway.security import MAX_BODY_BYTES
from protocol import CommandName, EvseStatus, StopReason

__all__ = ["RESPONSES", "SCHEMAS", "error", "json_response", "ref", "response_ref"]


def ref(name: str) -> dict[str, Any]:
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
NEW_PASSWORD = {"type": "string", "minLength": MIN_PASSWORD_CHARS, "maxLength": MAX_PASSWORD_CHARS}
LINK_TOKEN = {"type": "string", "description": "from the mailed link"}

_CURSOR = {
    "type": "string",
    "description": "the next (older) page: pass it as `before`; null on the last page",
    "example": "1764000000000:3f2a",
}

_HIDDEN = "null unless the caller is its driver or an operator"

RESERVATION_COUNT = _obj(
    {
        "id": _nullable({"type": "string", "description": _HIDDEN}),
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
                    "id": _nullable({"type": "string", "description": _HIDDEN}),
                    "open": BOOLEAN,
                    "energy_wh": {"type": "number", "description": "delivered in this session"},
                    "target_soc": _nullable(NUMBER),
                    "stop_reason": _nullable(
                        {"type": "string", "enum": [str(r) for r in StopReason]}
                    ),
                }
            )
        ),
        "reservation_id": _nullable(
            {"type": "string", "description": f"as the station reports it; {_HIDDEN}"}
        ),
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
                "session_id": _nullable({"type": "string", "description": _HIDDEN}),
                "session_energy_wh": NUMBER,
                "maintenance": BOOLEAN,
                "maintenance_pending": BOOLEAN,
                "reservation_id": _nullable({"type": "string", "description": _HIDDEN}),
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
            "evses": {"type": "array", "items": ref("Evse")},
        }
    ),
    "StationList": _obj({"stations": {"type": "array", "items": ref("Station")}}),
    "NearbyEvse": {
        "allOf": [
            ref("Evse"),
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
                "items": ref("NearbyEvse"),
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
            "password": NEW_PASSWORD,
        },
        "description": "A new driver account. Unknown fields are ignored.",
    },
    "RefreshRequest": {
        "type": "object",
        "required": ["refresh_token"],
        "properties": {"refresh_token": STRING},
    },
    "ResetRequest": {
        "type": "object",
        "required": ["email"],
        "properties": {"email": STRING},
        "description": "The address to mail a reset link to (if it has an account).",
    },
    "ResetConfirmation": {
        "type": "object",
        "required": ["token", "password"],
        "properties": {"token": LINK_TOKEN, "password": NEW_PASSWORD},
    },
    "EmailConfirmation": {
        "type": "object",
        "required": ["token"],
        "properties": {"token": LINK_TOKEN},
    },
    "Accepted": _obj(
        {"status": {"type": "string", "enum": ["accepted"]}, "message": STRING},
        description="The same answer whether or not the email has an account: the mail says.",
    ),
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
            "id": STRING,  # the caller's own
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
            "site_limit_kw": _nullable(
                {"type": "number", "description": "the site's limit on this EVSE (smart charging)"}
            ),
        }
    ),
    "SessionList": _obj({"sessions": {"type": "array", "items": ref("Session")}}),
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
    "NotificationList": _obj({"notifications": {"type": "array", "items": ref("Notification")}}),
    "MetricsSummary": METRICS_SUMMARY,
}


def json_response(schema: dict[str, Any], description: str, **extra: Any) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": schema}},
        **extra,
    }


def error(description: str, **extra: Any) -> dict[str, Any]:
    return json_response(ref("Error"), description, **extra)


RESPONSES: dict[str, Any] = {
    "MalformedJson": error("Malformed JSON: the body is not JSON, or not a JSON object."),
    "BadParameter": error("A query parameter is missing, malformed or out of range."),
    "Unauthorized": error(
        "No bearer token where one is needed, or an invalid, malformed or expired one.",
        headers={"WWW-Authenticate": {"schema": {"type": "string", "example": "Bearer"}}},
    ),
    "Forbidden": error(
        "'HTTPS required': a write, or any call with a token, over plain HTTP (the reason"
        " gives the HTTPS URL); or the caller may not do this."
    ),
    "HttpsRequired": error(
        "'HTTPS required': a call with a token over plain HTTP (the reason gives the HTTPS URL)."
    ),
    "NotFound": error("No such EVSE (or nothing of the caller's there)."),
    "Conflict": error("The EVSE or its station refuses, with the station's reason."),
    "TooLarge": error(f"The body is larger than {MAX_BODY_BYTES} bytes."),
    "Invalid": error("A field is missing, of the wrong type or out of range."),
    "NoMail": error("Mail is not configured on this server (`--smtp-url`)."),
    "BadLink": error(
        "Malformed JSON, or the link is invalid, expired or already used (ask for a new one)."
    ),
    "TooManyAttempts": error(
        "Too many attempts from this address, or too many failed ones from it for this"
        " account; retry later.",
        headers={
            "Retry-After": {
                "required": True,
                "schema": {"type": "integer", "minimum": 0},
                "description": "seconds",
            }
        },
    ),
    "TooManyInfoRequests": error(
        "Too many live info requests from this user (30 a minute); retry later.",
        headers={
            "Retry-After": {
                "required": True,
                "schema": {"type": "integer", "minimum": 1},
                "description": "seconds",
            }
        },
    ),
    "Unavailable": error("The CSMS, or the EVSE's actor, is not running; try again."),
    "Timeout": error("The station did not answer the command in time."),
}


def response_ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/responses/{name}"}
