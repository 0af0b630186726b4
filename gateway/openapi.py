"""The OpenAPI 3.0.3 description of the HTTP API, served at ``/openapi.json``.

Built from a table: the operations are the rows of :data:`gateway.openapi_routes.ROUTES`,
the schemas and shared responses are in :mod:`gateway.openapi_schemas`, and this module
adds what follows from a row's access (tag, server, security, usual refusals). It is
written by hand from :mod:`gateway.app`, :mod:`gateway.api`, :mod:`gateway.security`,
:mod:`gateway.events` and :mod:`gateway.views`; ``tests/test_openapi.py`` checks that every
route is documented (and nothing else), and fuzzes the API against this document with
schemathesis. Change both together.
"""

from __future__ import annotations

import functools
import json
from typing import Any

import falcon

from gateway.openapi_operator import OPERATOR_ROUTES, OPERATOR_SCHEMAS
from gateway.openapi_routes import ROUTES, Access, Route
from gateway.openapi_schemas import RESPONSES, SCHEMAS, error, ref, response_ref
from gateway.openapi_tags import TAG_ROUTES, TAG_SCHEMAS
from gateway.security import MAX_BODY_BYTES

__all__ = ["ALL_ROUTES", "OPENAPI", "OpenApiResource", "build_openapi"]

ALL_ROUTES: tuple[Route, ...] = (*ROUTES, *OPERATOR_ROUTES, *TAG_ROUTES)
"""Every operation, in the document's order."""

DEFAULT_HTTP_URL = "http://127.0.0.1:8080"
DEFAULT_HTTPS_URL = "https://127.0.0.1:8443"
HTTPS_DESCRIPTION = "HTTPS: logins, writes and every call that carries a token"
HTTP_DESCRIPTION = "plain HTTP: public reads without a token only"

BEARER: list[dict[str, list[str]]] = [{"bearerAuth": []}]
STREAM_AUTH: list[dict[str, list[str]]] = [{"bearerAuth": []}, {"accessTokenQuery": []}]

ACCESS_ERRORS: dict[Access, dict[str, str]] = {
    # A public read still refuses an invalid token, and any token over plain HTTP.
    Access.PUBLIC: {"401": "Unauthorized", "403": "HttpsRequired"},
    Access.AUTH: {"401": "Unauthorized", "403": "HttpsRequired", "422": "Invalid"},
    Access.DRIVERS: {"401": "Unauthorized", "403": "Forbidden"},
    Access.OPERATORS: {
        "401": "Unauthorized",
        "403": "'HTTPS required', or the caller is not an operator.",
    },
}
"""The refusals every operation of that access documents (a route's ``errors`` may override)."""
BODY_ERRORS = {"400": "MalformedJson", "413": "TooLarge"}
COMMAND_ERRORS = {"404": "NotFound", "503": "Unavailable", "504": "Timeout"}

SSE_DESCRIPTION = (
    "Server-Sent Events. Browsers cannot set headers on an EventSource, so the token may come"
    " as `?access_token=`. Each event is `id:`, `event: <kind>` and `data: <JSON>`; a"
    " `: ping` comment comes every 15 s, a `lagged` event when the client fell behind (it"
    " lost its oldest events); the stream ends after 5 minutes and `retry: 2000` makes the"
    " browser reconnect."
)
ACCESS_TOKEN_PARAM = {
    "name": "access_token",
    "in": "query",
    "required": False,
    "description": "the access token, for clients that cannot send an Authorization header",
    "schema": {"type": "string"},
}

INFO = {
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
}
TAGS = [
    {"name": "public", "description": "reads anyone may make, over HTTP or HTTPS"},
    {"name": "auth", "description": "accounts and tokens (HTTPS)"},
    {"name": "drivers", "description": "calls with a token (HTTPS)"},
    {"name": "operators", "description": "calls with an operator's token (HTTPS)"},
]
SECURITY_SCHEMES = {
    "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
    "accessTokenQuery": {
        "type": "apiKey",
        "in": "query",
        "name": "access_token",
        "description": "event streams only",
    },
}


def _response(value: str | dict[str, Any]) -> dict[str, Any]:
    """A name of a shared response, an error's description, or a whole response."""
    if isinstance(value, dict):
        return value
    return response_ref(value) if value in RESPONSES else error(value)


def _security(route: Route) -> list[dict[str, list[str]]]:
    if route.access in (Access.PUBLIC, Access.AUTH):
        return []
    return STREAM_AUTH if route.stream else BEARER


def operation(route: Route, https_server: dict[str, str] | None = None) -> dict[str, Any]:
    """The OpenAPI operation object of one row of the table."""
    status, ok = route.ok
    responses: dict[str, str | dict[str, Any]] = {
        status: ok,
        **(BODY_ERRORS if route.body is not None else {}),
        **ACCESS_ERRORS[route.access],
        **(COMMAND_ERRORS if route.command else {}),
        **route.errors,
    }
    op: dict[str, Any] = {
        "operationId": route.operation_id,
        "summary": route.summary,
        "tags": [str(route.access)],
    }
    if route.access is not Access.PUBLIC:
        op["servers"] = [
            https_server or {"url": DEFAULT_HTTPS_URL, "description": HTTPS_DESCRIPTION}
        ]
    op["security"] = _security(route)
    op["responses"] = {code: _response(value) for code, value in responses.items()}
    parameters = [*route.params, *([ACCESS_TOKEN_PARAM] if route.stream else [])]
    if parameters:
        op["parameters"] = parameters
    if route.body is not None:
        op["requestBody"] = {
            "required": route.body_required,
            "content": {"application/json": {"schema": ref(route.body)}},
        }
    if route.stream:
        op["description"] = SSE_DESCRIPTION
    return op


def build_openapi(
    routes: tuple[Route, ...] = ALL_ROUTES,
    *,
    http_url: str | None = DEFAULT_HTTP_URL,
    https_url: str | None = DEFAULT_HTTPS_URL,
) -> dict[str, Any]:
    """The whole document: ``paths`` from ``routes`` (in their order), ``components``, and
    the instance's URLs as ``servers`` (without HTTPS, the HTTP URL serves everything)."""
    if http_url is None and https_url is None:
        raise ValueError("the document needs at least one server URL")
    https_server = (
        {"url": https_url, "description": HTTPS_DESCRIPTION}
        if https_url is not None
        else {"url": str(http_url), "description": "every call (this instance has no HTTPS)"}
    )
    servers = [https_server]
    if http_url is not None and https_url is not None:
        servers.insert(0, {"url": http_url, "description": HTTP_DESCRIPTION})
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        methods = paths.setdefault(route.path, {})
        if route.method in methods:
            raise ValueError(f"{route.method.upper()} {route.path} is in the table twice")
        methods[route.method] = operation(route, https_server)
    return {
        "openapi": "3.0.3",
        "info": INFO,
        "servers": servers,
        "tags": TAGS,
        "paths": paths,
        "components": {
            "schemas": {**SCHEMAS, **OPERATOR_SCHEMAS, **TAG_SCHEMAS},
            "responses": RESPONSES,
            "securitySchemes": SECURITY_SCHEMES,
        },
    }


OPENAPI: dict[str, Any] = build_openapi()
"""The document for the default ports (8080, 8443); a gateway serves its own URLs."""


@functools.lru_cache(maxsize=16)
def _encoded(http_url: str | None, https_url: str | None) -> bytes:
    document = build_openapi(http_url=http_url, https_url=https_url)
    return json.dumps(document, separators=(",", ":")).encode()


class OpenApiResource:
    """``/openapi.json`` naming the URLs this instance serves: those it was configured with
    (``http_base``/``https_base``: the ports gunicorn binds), else the request's own."""

    def __init__(self, http_base: str | None = None, https_base: str | None = None) -> None:
        self._http = http_base.rstrip("/") if http_base else None
        self._https = https_base.rstrip("/") if https_base else None

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        own = req.prefix  # scheme://host[:port], as the client reached us
        http = self._http or (own if req.scheme == "http" else None)
        https = self._https or (own if req.scheme == "https" else None)
        resp.content_type = falcon.MEDIA_JSON
        resp.data = _encoded(http, https)
