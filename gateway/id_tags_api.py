"""RFID idTags (``docs/ocpp.md``, "RFID cards"): a driver registers the cards they badge at OCPP
chargers with; operators see and remove any.

- ``GET /me/tags``, ``POST /me/tags {"id_tag"}``, ``DELETE /me/tags/{id_tag}``: the caller's
  own (writes over HTTPS, like the rest of ``/me``). A tag belongs to one account: registering
  another account's tag is a 409 that says only that it is taken, and a tag that is not the
  caller's is a 404 to delete, whoever holds it (nothing tells a driver whose it is).
- ``GET /id-tags``, ``DELETE /id-tags/{id_tag}``: operators, every account's.

These read and write the SQL storage only, so a gateway apart from the node (``smartcharge
gateway``) serves them exactly as a node's worker does; the OCPP translator reads the same
table at each Authorize and StartTransaction.
"""

from __future__ import annotations

import math
from typing import Any, Final

import falcon

from gateway.ratelimit import SlidingWindowLimiter
from gateway.security import json_body, principal, require
from storage import MAX_TAGS_PER_DRIVER, DuplicateError, IdTag, Storage, valid_id_tag
from storage.errors import Conflict

__all__ = ["REGISTRATIONS_PER_HOUR", "add_id_tag_routes", "id_tag_json"]

API = "/api/v1"
REGISTRATIONS_PER_HOUR: Final = 20
"""``POST /me/tags`` per account and hour (per worker): a driver registers a few cards, and
whether a card number is taken must not be probed at will (a found number, written on a
cloned card, would charge on its holder's account)."""


def id_tag_json(tag: IdTag, *, driver: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {"id_tag": tag.id_tag, "created_at": tag.created_at}
    if driver:
        out["driver_id"] = tag.driver_id
    return out


@falcon.before(require())
class MyIdTagsResource:
    """``GET`` the caller's tags; ``POST {"id_tag"}`` registers one (201; again: the same)."""

    def __init__(self, storage: Storage) -> None:
        self._tags = storage.id_tags
        self._attempts = SlidingWindowLimiter(REGISTRATIONS_PER_HOUR, 3600.0)

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        tags = self._tags.of_driver(principal(req).user_id)
        resp.media = {"tags": [id_tag_json(t) for t in tags], "max": MAX_TAGS_PER_DRIVER}

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = json_body(req, {"id_tag": str}, required=("id_tag",))
        if not valid_id_tag(body["id_tag"]):
            raise falcon.HTTPUnprocessableEntity(
                title="Invalid",
                description="an idTag is 1 to 20 letters, digits, '_', ':' or '-'",
            )
        driver = principal(req).user_id
        retry_after = self._attempts.hit(driver)
        if retry_after is not None:
            wait = max(1, math.ceil(retry_after))
            raise falcon.HTTPTooManyRequests(
                title="Too many attempts",
                description=f"too many tag registrations; retry in {wait} s",
                retry_after=wait,
            )
        try:
            tag = self._tags.register(driver, body["id_tag"])
        except DuplicateError:
            raise falcon.HTTPConflict(
                title="Conflict", description="this tag is registered to another account"
            ) from None
        except Conflict as exc:
            raise falcon.HTTPConflict(title="Conflict", description=str(exc)) from None
        resp.status = falcon.HTTP_201
        resp.media = id_tag_json(tag)


@falcon.before(require())
class MyIdTagResource:
    """``DELETE /me/tags/{id_tag}``: only the caller's own (any case)."""

    def __init__(self, storage: Storage) -> None:
        self._tags = storage.id_tags

    def on_delete(self, req: falcon.Request, resp: falcon.Response, id_tag: str) -> None:
        if not self._tags.remove(id_tag, driver_id=principal(req).user_id):
            raise falcon.HTTPNotFound(description="you have no such tag")
        resp.status = falcon.HTTP_204


@falcon.before(require("operator"))
class IdTagsResource:
    """``GET /id-tags``: every registered tag with its driver, oldest first, paged."""

    def __init__(self, storage: Storage) -> None:
        self._tags = storage.id_tags

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        limit = req.get_param_as_int("limit", default=100, min_value=1, max_value=500) or 100
        offset = req.get_param_as_int("offset", default=0, min_value=0, max_value=10**9) or 0
        tags = self._tags.list(limit=limit, offset=offset)
        resp.media = {"tags": [id_tag_json(t, driver=True) for t in tags]}


@falcon.before(require("operator"))
class IdTagResource:
    """``DELETE /id-tags/{id_tag}``: whoever holds it."""

    def __init__(self, storage: Storage) -> None:
        self._tags = storage.id_tags

    def on_delete(self, req: falcon.Request, resp: falcon.Response, id_tag: str) -> None:
        if not self._tags.remove(id_tag):
            raise falcon.HTTPNotFound(description="no such tag")
        resp.status = falcon.HTTP_204


def add_id_tag_routes(routes: Any, storage: Any) -> None:
    """On SQL storage only (where the OCPP translator reads them)."""
    if not isinstance(storage, Storage):
        return
    routes.add_route(f"{API}/me/tags", MyIdTagsResource(storage))
    routes.add_route(f"{API}/me/tags/{{id_tag}}", MyIdTagResource(storage))
    routes.add_route(f"{API}/id-tags", IdTagsResource(storage))
    routes.add_route(f"{API}/id-tags/{{id_tag}}", IdTagResource(storage))
