"""Who is calling, over which transport, and with what body.

- :class:`TransportPolicy`: public reads may use plain HTTP; writes and every call
  that carries a token are refused there with a JSON 403 naming the HTTPS URL.
- :class:`Authentication`: turns ``Authorization: Bearer`` (or ``?access_token=``
  on event streams, which browsers cannot give headers) into ``req.context.principal``;
  on a write (POST, PUT, DELETE, ...) it also checks that the account is still enabled and
  the token not revoked since it was issued (``Authenticator.check_current``).
- :func:`require` hooks, and :func:`json_body`: bounded size, an object, only the
  known fields (unknown ones are ignored, never assigned), each of the right type.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

import falcon

from gateway.auth import Authenticator, Principal
from storage.errors import InvalidToken

__all__ = [
    "MAX_BODY_BYTES",
    "Authentication",
    "TransportPolicy",
    "json_body",
    "principal",
    "require",
]

MAX_BODY_BYTES = 16 * 1024
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
TOKEN_QUERY_PATHS = ("/api/v1/me/events", "/api/v1/events")


def _bearer(req: falcon.Request) -> str | None:
    header = req.get_header("Authorization")
    if header:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise falcon.HTTPUnauthorized(
                title="Unauthorized",
                description="use 'Authorization: Bearer <token>'",
                challenges=["Bearer"],
            )
        return token.strip()
    if req.path in TOKEN_QUERY_PATHS:
        query_token: str | None = req.get_param("access_token")
        return query_token
    return None


class TransportPolicy:
    """Refuse writes and token-carrying calls on plain HTTP (when an HTTPS URL is known)."""

    def __init__(self, https_base: str | None) -> None:
        self._https_base = https_base.rstrip("/") if https_base else None

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        if self._https_base is None or req.scheme == "https":
            return
        carries_token = req.get_header("Authorization") is not None or (
            req.path in TOKEN_QUERY_PATHS and req.get_param("access_token") is not None
        )
        if req.method not in SAFE_METHODS or carries_token:
            raise falcon.HTTPForbidden(
                title="HTTPS required",
                description=f"writes and authenticated calls need HTTPS: "
                f"{self._https_base}{req.relative_uri}",
            )


class Authentication:
    """Sets ``req.context.principal`` (``None`` without a token); a bad token is a 401."""

    def __init__(self, authenticator: Authenticator) -> None:
        self._auth = authenticator

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        req.context.principal = None
        token = _bearer(req)
        if token is None:
            return
        try:
            who = self._auth.verify(token)
            if req.method not in SAFE_METHODS:
                self._auth.check_current(who)
            req.context.principal = who
        except InvalidToken as exc:
            raise falcon.HTTPUnauthorized(
                title="Unauthorized", description=str(exc), challenges=["Bearer"]
            ) from None


def principal(req: falcon.Request) -> Principal:
    found: Principal | None = getattr(req.context, "principal", None)
    if found is None:
        raise falcon.HTTPUnauthorized(
            title="Unauthorized",
            description="this call needs a bearer token",
            challenges=["Bearer"],
        )
    return found


def require(*roles: str) -> Callable[..., None]:
    """A ``falcon.before`` hook: a valid token, with one of ``roles`` if any are given."""

    def hook(
        req: falcon.Request, resp: falcon.Response, resource: Any, params: Mapping[str, Any]
    ) -> None:
        who = principal(req)
        if roles and who.role not in roles:
            raise falcon.HTTPForbidden(
                title="Forbidden", description=f"this call is for {' or '.join(roles)}s"
            )

    return hook


def json_body(
    req: falcon.Request,
    fields: Mapping[str, type | tuple[type, ...]],
    *,
    required: tuple[str, ...] = (),
) -> dict[str, Any]:
    """The known fields of a JSON object body, type-checked; anything else is ignored."""
    raw = _read_body(req)
    if len(raw) > MAX_BODY_BYTES:
        raise falcon.HTTPContentTooLarge(
            title="Body too large", description=f"bodies are limited to {MAX_BODY_BYTES} bytes"
        )
    if not raw.strip():
        body: Any = {}
    else:
        try:
            body = json.loads(raw)
        except (UnicodeDecodeError, ValueError) as exc:
            raise falcon.HTTPBadRequest(
                title="Malformed JSON", description=f"the body is not valid JSON: {exc}"
            ) from None
        except RecursionError:
            raise falcon.HTTPBadRequest(
                title="Malformed JSON", description="the body is nested too deeply"
            ) from None
    if not isinstance(body, dict):
        raise falcon.HTTPBadRequest(
            title="Malformed JSON", description="the body must be a JSON object"
        )
    out: dict[str, Any] = {}
    for name, kind in fields.items():
        if body.get(name) is None:
            continue
        value = body[name]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if (isinstance(value, bool) and bool not in kinds) or not isinstance(value, kinds):
            names = " or ".join(k.__name__ for k in kinds)
            raise falcon.HTTPUnprocessableEntity(
                title="Invalid field", description=f"field {name!r} must be {names}"
            )
        if isinstance(value, str) and not _is_unicode(value):
            raise falcon.HTTPUnprocessableEntity(
                title="Invalid field", description=f"field {name!r} is not valid Unicode text"
            )
        out[name] = value
    missing = [name for name in required if name not in out]
    if missing:
        raise falcon.HTTPUnprocessableEntity(
            title="Missing field", description=f"missing field(s): {', '.join(missing)}"
        )
    return out


def _read_body(req: falcon.Request) -> bytes:
    """At most ``MAX_BODY_BYTES + 1`` bytes of the body (more is the caller's 413).

    A chunked body has no ``Content-Length``, so Falcon's ``bounded_stream`` reads it as
    empty: it is read from the server's stream instead (gunicorn de-chunks it and ends it at
    the last chunk), still never past the limit. On the ASGI app the body was read on the
    event loop before the responder ran (``gateway.asgi.read_body``), with the same limit.
    """
    early: bytes | None = getattr(req.context, "raw_body", None)
    if early is not None:
        return early
    length = req.content_length
    if length is not None and length > MAX_BODY_BYTES:
        raise falcon.HTTPContentTooLarge(
            title="Body too large", description=f"bodies are limited to {MAX_BODY_BYTES} bytes"
        )
    chunked = "chunked" in (req.get_header("Transfer-Encoding") or "").lower()
    if length is None and chunked:
        raw = b""
        while len(raw) <= MAX_BODY_BYTES:
            chunk = req.stream.read(MAX_BODY_BYTES + 1 - len(raw))
            if not chunk:
                break
            raw += chunk
        return raw
    data: bytes = req.bounded_stream.read(MAX_BODY_BYTES + 1)
    return data


def _is_unicode(text: str) -> bool:
    """False for lone surrogates (JSON lets ``"\\ud800"`` through; UTF-8 cannot encode it)
    and for NUL (``"\\u0000"``: PostgreSQL's text cannot hold it, SQLite's C API cuts at it)."""
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
