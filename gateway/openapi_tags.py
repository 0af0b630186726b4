"""The RFID idTags' part of the OpenAPI document (``gateway.id_tags_api``): rows and schemas
that :mod:`gateway.openapi` adds to the others (kept apart so no module grows past 400 lines)."""

from __future__ import annotations

from typing import Any

from gateway.id_tags_api import REGISTRATIONS_PER_HOUR
from gateway.openapi_routes import API, Access, Route, _done, _ok, _path_param, _query
from gateway.openapi_schemas import EPOCH_MS, INTEGER, STRING, _obj, error, ref
from storage import ID_TAG_PATTERN, MAX_TAGS_PER_DRIVER

__all__ = ["TAG_ROUTES", "TAG_SCHEMAS"]

PUBLIC, AUTH, DRIVERS, OPERATORS = Access

ID_TAG = _path_param(
    "id_tag", "an RFID idTag (compared case-insensitively)", ID_TAG_PATTERN, "04A2B3C4D5"
)
_ID_TAG_SCHEMA = {
    "type": "string",
    "pattern": ID_TAG_PATTERN,
    "description": "OCPP 1.6's IdToken: 1 to 20 letters, digits, _, : or -; compared"
    " case-insensitively",
    "example": "04A2B3C4D5",
}

TAG_ROUTES: tuple[Route, ...] = (
    Route("get", f"{API}/me/tags", "myIdTags", DRIVERS,
          summary="The RFID cards (idTags) registered to the caller, to badge at OCPP chargers",
          ok=_ok("MyIdTagList", "The caller's tags.")),
    Route("post", f"{API}/me/tags", "registerIdTag", DRIVERS,
          summary="Register an RFID card (idTag) to the caller: badging it at an OCPP charger"
          " starts a session billed to the caller",
          ok=_ok("IdTag", "Registered (also when it already was the caller's).", "201"),
          body="IdTagRequest",
          errors={"409": f"The tag is another account's, or the caller holds"
                  f" {MAX_TAGS_PER_DRIVER} tags already.",
                  "422": "Invalid",
                  "429": error(f"More than {REGISTRATIONS_PER_HOUR} registrations by the caller"
                               " within an hour; retry later.",
                               headers={"Retry-After": {"required": True,
                                                        "schema": {"type": "integer",
                                                                   "minimum": 1},
                                                        "description": "seconds"}})}),
    Route("delete", f"{API}/me/tags/{{id_tag}}", "removeIdTag", DRIVERS,
          summary="Remove one of the caller's RFID cards",
          ok=_done("204", "Removed."), params=(ID_TAG,),
          errors={"404": "The caller has no such tag."}),
    Route("get", f"{API}/id-tags", "listIdTags", OPERATORS,
          summary="Every registered RFID card with its driver, oldest first (operators)",
          ok=_ok("IdTagList", "A page of tags."),
          params=(
              _query("limit", {"type": "integer", "minimum": 1, "maximum": 500, "default": 100}),
              _query("offset", {"type": "integer", "minimum": 0, "maximum": 10**9, "default": 0}),
          ),
          errors={"400": "BadParameter"}),
    Route("delete", f"{API}/id-tags/{{id_tag}}", "deleteIdTag", OPERATORS,
          summary="Remove any driver's RFID card (operators)",
          ok=_done("204", "Removed."), params=(ID_TAG,), errors={"404": "No such tag."}),
)  # fmt: skip

TAG_SCHEMAS: dict[str, Any] = {
    "IdTagRequest": {
        "type": "object",
        "required": ["id_tag"],
        "properties": {"id_tag": _ID_TAG_SCHEMA},
    },
    "IdTag": _obj({"id_tag": STRING, "created_at": EPOCH_MS}),
    "MyIdTagList": _obj(
        {
            "tags": {"type": "array", "items": ref("IdTag")},
            "max": {**INTEGER, "description": "how many tags an account may hold"},
        }
    ),
    "IdTagList": _obj(
        {
            "tags": {
                "type": "array",
                "items": _obj({"id_tag": STRING, "created_at": EPOCH_MS, "driver_id": STRING}),
            }
        }
    ),
}
