"""The HTTP API as a table: one :class:`Route` per operation, from which
:mod:`gateway.openapi` writes the ``paths`` of the OpenAPI document.

What a row leaves out comes from its ``access`` (:class:`Access`): the tag, the server, the
security requirement and the usual refusals (401, 403); a ``body`` adds the malformed-JSON
and too-large refusals, ``command=True`` the refusals of a command to a station (404, 503,
504), ``stream=True`` the Server-Sent Events shape. ``errors`` adds or overrides responses by
status: a name of :data:`~gateway.openapi_schemas.RESPONSES` refers to that response, any
other text is an error of its own with that description.
"""

from __future__ import annotations

from dataclasses import KW_ONLY, dataclass, field
from enum import StrEnum
from typing import Any

from gateway.auth_model import MAX_PASSWORD_CHARS, MIN_PASSWORD_CHARS
from gateway.openapi_schemas import error, json_response, ref

__all__ = ["API", "ROUTES", "Access", "Route"]

API = "/api/v1"
STATION_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
"""Station ids, as protocol v2 allows them (``protocol.valid_station_id``): no . or :."""
EVSE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}\.[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"
"""EVSE ids: the station's id, a dot, the station's own EVSE id (``protocol.evse_key``),
so two stations that both name an EVSE ``1`` never collide."""


class Access(StrEnum):
    """Who may call an operation, and so its tag, server, security and usual refusals."""

    PUBLIC = "public"
    """Anyone, over HTTP or HTTPS; still refuses an invalid token, and any token over HTTP."""
    AUTH = "auth"
    """Logins and accounts: HTTPS, no token."""
    DRIVERS = "drivers"
    """A token, over HTTPS."""
    OPERATORS = "operators"
    """An operator's token, over HTTPS."""


@dataclass(frozen=True, slots=True)
class Route:
    """One operation of the API (see the module docstring for what is implied):
    ``Route(method, path, operation_id, access, summary=..., ok=..., ...)``."""

    method: str
    path: str
    operation_id: str
    access: Access
    _: KW_ONLY
    summary: str
    ok: tuple[str, dict[str, Any]]
    """The success status and its response."""
    body: str | None = None
    """The request body's schema name."""
    body_required: bool = True
    params: tuple[dict[str, Any], ...] = ()
    command: bool = False
    stream: bool = False
    errors: dict[str, str | dict[str, Any]] = field(default_factory=dict)


def _path_param(name: str, description: str, pattern: str, example: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": {"type": "string", "pattern": pattern, "example": example},
    }


EVSE_ID = _path_param(
    "evse_id",
    "an EVSE id: station id, a dot, the station's EVSE id (st-001.1)",
    EVSE_ID_PATTERN,
    "st-001.1",
)
SESSION_ID = _path_param(
    "session_id",
    "a session id, as the start answered it",
    r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$",
    "s-1b2c3d",
)
SITE_ID = _path_param("site_id", "a site id, e.g. depot", STATION_ID_PATTERN, "depot")
STATION_ID = _path_param("station_id", "a station id, e.g. st-001", STATION_ID_PATTERN, "st-001")


def _query(name: str, schema: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, **extra, "schema": schema}


def _limit(default: int, maximum: int) -> dict[str, Any]:
    schema = {"type": "integer", "minimum": 1, "maximum": maximum, "default": default}
    return _query("limit", schema)


def _ok(schema: str | dict[str, Any], description: str, status: str = "200") -> Any:
    return status, json_response(ref(schema) if isinstance(schema, str) else schema, description)


def _done(status: str, description: str) -> tuple[str, dict[str, Any]]:
    """A success without a body."""
    return status, {"description": description}


def _refused(description: str) -> dict[str, Any]:
    """A 401 of a login or token exchange: an error with a ``WWW-Authenticate`` header."""
    return error(description, headers={"WWW-Authenticate": {"schema": {"type": "string"}}})


SSE_OK = (
    "200",
    {
        "description": "An endless event stream.",
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
    },
)
METRICS_OK = (
    "200",
    {
        "description": "The Prometheus text exposition format: EVSEs by status, open"
        " sessions and event streams, MQTT messages in/out/malformed, command round"
        " trips and time-outs by command, actor restarts.",
        "content": {"text/plain": {"schema": {"type": "string"}}},
    },
)
COORDINATES = (
    {**_query("lat", {"type": "number", "minimum": -90, "maximum": 90}), "required": True},
    {**_query("lon", {"type": "number", "minimum": -180, "maximum": 180}), "required": True},
    _limit(10, 100),
    _query(
        "available",
        {"type": "boolean", "default": False},
        description="only EVSEs that are Available and not reserved",
    ),
)

PUBLIC, AUTH, DRIVERS, OPERATORS = Access

ROUTES: tuple[Route, ...] = (
    # ------------------------------------------------------------------ public reads
    Route("get", "/healthz", "getHealth", PUBLIC,
          summary="Liveness, whether MQTT is connected, and the fleet size",
          ok=_ok("Health", "The gateway is up.")),
    Route("get", "/openapi.json", "getOpenApi", PUBLIC,
          summary="This document",
          ok=_ok({"type": "object"}, "The OpenAPI 3.0.3 document.")),
    Route("get", "/metrics", "getMetrics", PUBLIC,
          summary="Prometheus metrics (no token: scrapers use plain HTTP)", ok=METRICS_OK),
    Route("get", f"{API}/metrics/summary", "metricsSummary", OPERATORS,
          summary="Energy and sessions per day and per station, utilisation per EVSE (operators)",
          ok=_ok("MetricsSummary", "The summary.")),
    Route("get", f"{API}/stations", "listStations", PUBLIC,
          summary="Every station with its EVSEs, sorted by id",
          ok=_ok("StationList", "The fleet.")),
    Route("get", f"{API}/stations/{{station_id}}", "getStation", PUBLIC,
          summary="One station with its EVSEs", ok=_ok("Station", "The station."),
          params=(STATION_ID,), errors={"404": "No such station."}),
    Route("get", f"{API}/evses/nearest", "nearestEvses", PUBLIC,
          summary="EVSEs by great-circle distance from a point, nearest first",
          ok=_ok("NearbyEvseList", "Up to `limit` EVSEs."), params=COORDINATES,
          errors={"400": "BadParameter"}),
    Route("get", f"{API}/evses/{{evse_id}}", "getEvse", PUBLIC,
          summary="One EVSE, as the CSMS last heard of it", ok=_ok("Evse", "The EVSE."),
          params=(EVSE_ID,), errors={"404": "NotFound"}),
    # ------------------------------------------------------------------ accounts and tokens
    Route("post", f"{API}/auth/register", "register", AUTH,
          summary="Create a driver account: logged in at once, or (with mail) by a mailed link",
          ok=_ok("Tokens", "Registered and logged in (a server without mail).", "201"),
          body="Registration",
          errors={
              "202": _ok("Accepted", "With mail: whether or not the email has an account, a"
                         " mail says what next (confirm the address, or reset the password)."
                         )[1],
              "409": "Without mail: an account already exists for this email.",
              "422": "A field is missing or not a string, the email is not plausible, or the"
              f" password is not {MIN_PASSWORD_CHARS} to {MAX_PASSWORD_CHARS} characters.",
              "429": "TooManyAttempts",
          }),
    Route("post", f"{API}/auth/login", "login", AUTH,
          summary="Exchange an email and password for tokens",
          ok=_ok("Tokens", "Logged in."), body="Credentials",
          errors={
              "401": _refused(
                  "Wrong email or password (one message for both), or an invalid"
                  " Authorization header."
              ),
              "403": "'HTTPS required', or the right password for an account whose email"
              " address is not confirmed yet.",
              "429": "TooManyAttempts",
          }),
    Route("post", f"{API}/auth/reset", "requestPasswordReset", AUTH,
          summary="Mail a password-reset link (the same answer whether or not the email has"
          " an account)",
          ok=_ok("Accepted", "Accepted; a link is mailed if the address has an account.", "202"),
          body="ResetRequest", errors={"429": "TooManyAttempts", "503": "NoMail"}),
    Route("post", f"{API}/auth/reset/confirm", "resetPassword", AUTH,
          summary="Set a new password with a mailed reset link's token, and log in",
          ok=_ok("Tokens", "New password set; every other login of the account is ended."),
          body="ResetConfirmation",
          errors={
              "400": "BadLink",
              "422": "A field is missing or not a string, or the password is not"
              f" {MIN_PASSWORD_CHARS} to {MAX_PASSWORD_CHARS} characters.",
              "503": "NoMail",
          }),
    Route("post", f"{API}/auth/confirm", "confirmEmail", AUTH,
          summary="Confirm an email address with a mailed link's token",
          ok=_done("204", "Confirmed: the account may log in."), body="EmailConfirmation",
          errors={"400": "BadLink", "503": "NoMail"}),
    Route("post", f"{API}/auth/refresh", "refresh", AUTH,
          summary="Exchange a refresh token for new tokens (the old one stops working)",
          ok=_ok("Tokens", "New tokens."), body="RefreshRequest",
          errors={
              "401": _refused(
                  "Unknown, expired, revoked or reused refresh token (a reuse revokes"
                  " every token of its login)."
              )
          }),
    Route("post", f"{API}/auth/logout", "logout", AUTH,
          summary="End the login the refresh token belongs to",
          ok=_done("204", "Logged out."), body="RefreshRequest",
          errors={"401": _refused("Unknown refresh token.")}),
    # ------------------------------------------------------------------ drivers' EVSE calls
    Route("get", f"{API}/evses/{{evse_id}}/info", "evseInfo", DRIVERS,
          summary="A live round trip to the station (not the CSMS's cached view)",
          ok=_ok("CommandOutcome", "The station's answer, even a refusal (the session and"
                 " reservation ids only for their driver and operators)."),
          params=(EVSE_ID,), command=True, errors={"429": "TooManyInfoRequests"}),
    Route("post", f"{API}/evses/{{evse_id}}/reservation", "reserve", DRIVERS,
          summary="Reserve an Available EVSE (the countdown is the CSMS's, 15 minutes by default)",
          ok=_ok("Reservation", "Reserved.", "201"), params=(EVSE_ID,), command=True,
          body="EmptyRequest", body_required=False,
          errors={"409": "Not Available, already reserved, the caller (a driver) already holds"
                  " a reservation, or the station refused."}),
    Route("delete", f"{API}/evses/{{evse_id}}/reservation", "cancelReservation", DRIVERS,
          summary="Cancel the caller's reservation (operators: anyone's)",
          ok=_done("204", "Cancelled."), params=(EVSE_ID,), command=True,
          errors={"404": "The caller holds no reservation on this EVSE."}),
    Route("post", f"{API}/evses/{{evse_id}}/start", "startCharging", DRIVERS,
          summary="Start a session (the caller's reservation is used; another driver's refuses"
          " the start, an operator's start releases it)",
          ok=_ok("StartResult", "The station started the session.", "201"), params=(EVSE_ID,),
          command=True, body="StartRequest", body_required=False,
          errors={"409": "Reserved by another driver, the caller (a driver) already runs as many"
                  " sessions as allowed, or the EVSE or its station refuses.",
                  "422": "target_soc is not a number from 1 to 100."}),
    Route("post", f"{API}/evses/{{evse_id}}/stop", "stopCharging", DRIVERS,
          summary="Stop the running session (drivers: only their own)",
          ok=_ok("EvseCommandResult", "The station stopped the session."), params=(EVSE_ID,),
          command=True, body="EmptyRequest", body_required=False,
          errors={
              "403": "'HTTPS required', or the session is not the caller's.",
              "404": "No such EVSE, or (drivers) no session running there.",
              "409": "(Operators) no session running, or the station refused.",
          }),
    Route("put", f"{API}/evses/{{evse_id}}/maintenance", "setMaintenance", OPERATORS,
          summary="Switch maintenance on or off (operators); a running session finishes first",
          ok=_ok("EvseCommandResult", "The station accepted."), params=(EVSE_ID,),
          command=True, body="MaintenanceRequest", errors={"409": "Conflict", "422": "Invalid"}),
    # ------------------------------------------------------------------ station credentials
    Route("get", f"{API}/station-credentials", "listStationCredentials", OPERATORS,
          summary="Every station's broker credentials, revoked ones too, never a password"
          " (operators)",
          ok=_ok("StationCredentialList", "The stations.")),
    Route("post", f"{API}/station-credentials", "addStationCredentials", OPERATORS,
          summary="Provision a station on the broker; its password is in this answer only"
          " (operators)",
          ok=_ok("NewStationCredential", "Provisioned.", "201"),
          body="StationCredentialRequest",
          errors={
              "409": "The station already has credentials: revoke them first.",
              "422": "Invalid",
          }),
    Route("delete", f"{API}/station-credentials/{{station_id}}", "revokeStationCredentials",
          OPERATORS,
          summary="Revoke a station's credentials: the broker refuses it from now on (operators)",
          ok=_done("204", "Revoked."), params=(STATION_ID,),
          errors={"404": "The station has no active credentials."}),
    # ------------------------------------------------------------------ the caller's records
    Route("get", f"{API}/me/sessions", "mySessions", DRIVERS,
          summary="The caller's charging sessions, newest first",
          ok=_ok("SessionList", "The sessions."), params=(_limit(50, 200),),
          errors={"400": "BadParameter"}),
    Route("put", f"{API}/me/sessions/{{session_id}}/departure", "setDeparture", DRIVERS,
          summary="When the caller leaves (a running session of theirs): on a site over its"
          " limit, a session that needs more energy per hour left gets a larger share",
          ok=_ok("Departure", "Noted."), params=(SESSION_ID,), body="DepartureRequest",
          errors={"404": "No running session of the caller's with that id.",
                  "422": "Invalid"}),
    Route("get", f"{API}/me/notifications", "myNotifications", DRIVERS,
          summary="The caller's notifications, newest first",
          ok=_ok("NotificationList", "The notifications."), params=(_limit(50, 200),),
          errors={"400": "BadParameter"}),
    # ------------------------------------------------------------------ event streams
    Route("get", f"{API}/me/events", "myEvents", DRIVERS,
          summary="Live events of the caller's sessions (`session`) and notifications"
          " (`notification`)",
          ok=SSE_OK, stream=True),
    Route("get", f"{API}/events", "allEvents", OPERATORS,
          summary="Every live event, for operators: `evse` (coalesced: the latest per EVSE,"
          " at most every 250 ms), `station`, `alert` and `alert_ack` (an Alert), in order",
          ok=SSE_OK, stream=True),
)  # fmt: skip
