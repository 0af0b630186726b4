"""The one place a domain error (:mod:`storage.errors`) becomes an HTTP status.

:func:`install` registers one Falcon error handler for the root, :class:`SmartchargeError`;
the handler looks the error's class up in :data:`HTTP_STATUS` through its MRO, so the most
specific entry wins (``StorageUnavailableError`` is 503 although ``StorageError`` is 500).
"""

from __future__ import annotations

import logging
from typing import Any, Final

import falcon
import falcon.asgi

from storage.errors import (
    ActorUnavailableError,
    AuthError,
    CommandTimeoutError,
    Conflict,
    EmailNotConfirmed,
    EmailTaken,
    FirebaseUnavailable,
    Forbidden,
    InvalidEmail,
    InvalidLink,
    NotFound,
    SmartchargeError,
    StationOfflineError,
    StorageError,
    StorageUnavailableError,
    UnknownEvseError,
    WeakPassword,
)

__all__ = ["HTTP_STATUS", "http_status_of", "install"]

log = logging.getLogger(__name__)

HTTP_STATUS: Final[dict[type[SmartchargeError], int]] = {
    SmartchargeError: 500,
    NotFound: 404,
    UnknownEvseError: 404,
    Forbidden: 403,
    Conflict: 409,
    StationOfflineError: 409,
    ActorUnavailableError: 503,
    CommandTimeoutError: 504,
    AuthError: 401,
    EmailTaken: 409,
    EmailNotConfirmed: 403,
    InvalidLink: 400,
    WeakPassword: 422,
    InvalidEmail: 422,
    FirebaseUnavailable: 503,
    StorageError: 500,
    StorageUnavailableError: 503,
}
"""Domain error class -> HTTP status; a class not listed takes its nearest listed base's."""

_HIDDEN = (StorageError,)
"""Errors whose message is for the log, not the client (SQL, paths)."""


def http_status_of(error: SmartchargeError) -> int:
    for cls in type(error).__mro__:
        status = HTTP_STATUS.get(cls)
        if status is not None:
            return status
    return 500


def install(app: falcon.App) -> None:
    """Map every :class:`SmartchargeError` raised by a responder to its status (on the ASGI
    app too: the handler only raises, so a coroutine wrapping it never blocks the loop)."""
    if isinstance(app, falcon.asgi.App):
        app.add_error_handler(SmartchargeError, _handle_async)
    else:
        app.add_error_handler(SmartchargeError, _handle)


async def _handle_async(
    req: falcon.Request, resp: falcon.Response, ex: SmartchargeError, params: dict[str, Any]
) -> None:
    _handle(req, resp, ex, params)


def _handle(
    req: falcon.Request, resp: falcon.Response, ex: SmartchargeError, params: dict[str, Any]
) -> None:
    status = http_status_of(ex)
    description = str(ex)
    if isinstance(ex, _HIDDEN):
        log.error("storage error on %s %s: %s", req.method, req.path, ex)
        description = (
            "storage is unavailable; try again" if status == 503 else "internal storage error"
        )
    if status == 401:
        raise falcon.HTTPUnauthorized(
            title="Unauthorized", description=description, challenges=["Bearer"]
        )
    raise falcon.HTTPError(falcon.code_to_http_status(status), description=description)
