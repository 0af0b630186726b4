"""The OpenAPI document's route table (gateway/openapi_routes.py) and what a row implies;
the document as a whole is checked against the running gateway in test_openapi.py."""

from __future__ import annotations

import dataclasses

import pytest

from gateway.openapi import ACCESS_TOKEN_PARAM, STREAM_AUTH, build_openapi, operation
from gateway.openapi import ALL_ROUTES as ROUTES
from gateway.openapi_routes import Access, Route


def test_a_route_twice_in_the_table_is_refused() -> None:
    with pytest.raises(ValueError, match="twice"):
        build_openapi((*ROUTES, ROUTES[0]))


def test_every_operation_id_is_unique() -> None:
    ids = [route.operation_id for route in ROUTES]
    assert len(ids) == len(set(ids))


def test_a_public_read_needs_no_token_and_works_over_plain_http() -> None:
    health = next(r for r in ROUTES if r.operation_id == "getHealth")
    op = operation(health)
    assert op["security"] == []
    assert "servers" not in op  # the document's servers: HTTP and HTTPS
    assert op["responses"]["403"] == {"$ref": "#/components/responses/HttpsRequired"}


def test_a_stream_takes_its_token_from_the_query_too() -> None:
    events = next(r for r in ROUTES if r.operation_id == "allEvents")
    op = operation(events)
    assert op["security"] == STREAM_AUTH
    assert op["parameters"] == [ACCESS_TOKEN_PARAM]
    assert "description" in op


def test_a_row_error_overrides_the_usual_refusal_and_text_becomes_an_error_body() -> None:
    row = Route(
        "post",
        "/x",
        "x",
        Access.DRIVERS,
        summary="x",
        ok=("200", {"description": "ok"}),
        body="EmptyRequest",
        command=True,
        errors={"404": "Nothing here.", "409": "Conflict"},
    )
    responses = operation(row)["responses"]
    assert list(responses) == ["200", "400", "413", "401", "403", "404", "503", "504", "409"]
    assert responses["404"]["description"] == "Nothing here."
    assert responses["409"] == {"$ref": "#/components/responses/Conflict"}
    assert operation(dataclasses.replace(row, body=None))["responses"].keys() == {
        "200",
        "401",
        "403",
        "404",
        "503",
        "504",
        "409",
    }
