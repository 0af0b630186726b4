"""The API's security rules, end to end over the in-process CSMS: request bodies. Only known
fields are read (no choosing one's role, user id, session id or driver), and bodies are bounded
in size and depth and validated (400, 413 and 422, never 500)."""

from __future__ import annotations

from typing import Any

import falcon.testing
import pytest

from tests import api_fixtures
from tests.api_fixtures import PASSWORD, Running, next_event
from tests.security_support import EVSE, reason_of

running = api_fixtures.running  # the fixture (an assignment, so tests may shadow it)

pytestmark = pytest.mark.timeout(120)


def raw_request(
    running: Running, method: str, path: str, body: str | bytes, token: str | None = None
) -> falcon.testing.Result:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return running.client.simulate_request(
        method, path, body=body, headers=headers, protocol="https"
    )


# -- 6. unknown fields -------------------------------------------------------------------


@pytest.mark.integration
def test_registering_with_a_role_and_user_id_still_makes_a_plain_driver(running: Running) -> None:
    result = running.call(
        "POST",
        "/api/v1/auth/register",
        body={
            "email": "mallory@example.com",
            "password": PASSWORD,
            "role": "operator",
            "user_id": "x",
        },
    )
    assert result.status_code == 201, result.json
    who = running.auth.verify(result.json["access_token"])
    assert who.role == "driver"
    assert who.user_id != "x"
    stored = running.storage.users.by_email("mallory@example.com")
    assert stored is not None
    assert stored.role == "driver"
    assert stored.id == who.user_id
    refused = running.call(
        "PUT", f"/api/v1/evses/{EVSE}/maintenance", result.json["access_token"], {"enabled": True}
    )
    assert refused.status_code == 403, refused.json


@pytest.mark.integration
def test_a_start_cannot_choose_its_session_id_or_driver(running: Running) -> None:
    alice, alice_id = running.driver("alice@example.com")
    _, bob_id = running.driver("bob@example.com")
    live = running.live(alice_id)

    started = running.call(
        "POST",
        f"/api/v1/evses/{EVSE}/start",
        alice,
        {
            "session_id": "mine",
            "target_soc": 50,
            "driver_id": bob_id,
        },
    )

    assert started.status_code == 201, started.json
    session_id = started.json["session_id"]
    assert session_id != "mine"
    note = next_event(live, "notification")
    assert note.data["kind"] == "session_started"
    assert note.data["data"]["session_id"] == session_id
    row = running.storage.sessions.get(session_id)
    assert row is not None
    assert row.driver_id == alice_id
    assert running.storage.sessions.get("mine") is None
    assert running.storage.sessions.by_driver(bob_id) == []
    running.watcher.wait_for(running.watcher.status_is(EVSE, "Charging"), "charging")
    assert running.watcher.state(EVSE).session_id == session_id


# -- 7. bodies -------------------------------------------------------------------------


@pytest.mark.integration
def test_an_oversized_body_gets_413(running: Running) -> None:
    alice, _ = running.driver("alice@example.com")
    huge = "x" * (16 * 1024 + 1)
    for path, token in (("/api/v1/auth/login", None), (f"/api/v1/evses/{EVSE}/start", alice)):
        result = running.call("POST", path, token, {"email": "a@example.com", "password": huge})
        assert result.status_code == 413, (path, result.json)
        assert "16384" in reason_of(result)
    assert running.watcher.state(EVSE).status == "Available"


@pytest.mark.integration
@pytest.mark.parametrize(
    "body", ["{not json", '{"email": ', "[]", '["a", "b"]', '"text"', "42", "null", b"\xff\xfe{}"]
)
def test_a_malformed_or_non_object_body_gets_400(running: Running, body: str | bytes) -> None:
    result = raw_request(running, "POST", "/api/v1/auth/login", body)
    assert result.status_code == 400, result.json
    reason_of(result)


@pytest.mark.integration
def test_a_deeply_nested_body_under_the_size_limit_gets_400_not_500(running: Running) -> None:
    body = "[" * 5000 + "]" * 5000  # 10 kB: passes the size check, then blows json's stack
    result = raw_request(running, "POST", "/api/v1/auth/login", body)
    assert result.status_code == 400, result.json
    assert "nested" in reason_of(result)


LONE_SURROGATE = "\\ud800" * 12  # valid JSON escapes, but no UTF-8 encoding exists


@pytest.mark.integration
@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("login", f'{{"email": "alice@example.com", "password": "{LONE_SURROGATE}"}}'),
        ("login", f'{{"email": "{LONE_SURROGATE}@example.com", "password": "x{PASSWORD}"}}'),
        ("register", f'{{"email": "{LONE_SURROGATE}@example.com", "password": "{PASSWORD}"}}'),
        ("register", f'{{"email": "eve@example.com", "password": "{LONE_SURROGATE}"}}'),
        ("refresh", f'{{"refresh_token": "{LONE_SURROGATE}"}}'),
        ("logout", f'{{"refresh_token": "{LONE_SURROGATE}"}}'),
    ],
    ids=[
        "login-password",
        "login-email",
        "register-email",
        "register-password",
        "refresh",
        "logout",
    ],
)
def test_a_string_that_is_not_unicode_text_gets_422_not_500(
    running: Running, path: str, body: str
) -> None:
    running.driver("alice@example.com")
    result = raw_request(running, "POST", f"/api/v1/auth/{path}", body)
    assert result.status_code == 422, result.json
    assert "Unicode" in reason_of(result)


@pytest.mark.integration
@pytest.mark.needs_db
def test_a_nul_in_a_stored_name_gets_422_not_500(running: Running) -> None:
    """PostgreSQL's text cannot hold NUL: found by the OpenAPI fuzzer on a station's name."""
    operator = running.operator()
    body = '{"station_id": "st-nul", "name": "bay\\u00001"}'
    result = raw_request(running, "POST", "/api/v1/station-credentials", body, operator)
    assert result.status_code == 422, result.json
    assert "Unicode" in reason_of(result)
    assert running.storage.station_credentials.get("st-nul") is None


@pytest.mark.integration
def test_wrong_types_missing_fields_and_out_of_range_values_get_422(running: Running) -> None:
    alice, _ = running.driver("alice@example.com")
    operator = running.operator()
    start = f"/api/v1/evses/{EVSE}/start"
    maintenance = f"/api/v1/evses/{EVSE}/maintenance"
    cases: list[tuple[str, str, str | None, Any]] = [
        ("POST", "/api/v1/auth/login", None, {"email": "a@example.com", "password": 1234567890}),
        ("POST", "/api/v1/auth/register", None, {"email": ["a@example.com"], "password": PASSWORD}),
        ("POST", "/api/v1/auth/login", None, {"email": "a@example.com"}),
        ("POST", "/api/v1/auth/login", None, {}),
        ("POST", "/api/v1/auth/login", None, {"email": "a@example.com", "password": None}),
        ("POST", "/api/v1/auth/refresh", None, {}),
        ("POST", "/api/v1/auth/refresh", None, {"refresh_token": 7}),
        ("POST", start, alice, {"target_soc": "fifty"}),
        ("POST", start, alice, {"target_soc": True}),
        ("POST", start, alice, {"target_soc": 0}),
        ("POST", start, alice, {"target_soc": 101}),
        ("POST", start, alice, {"target_soc": -5}),
        ("PUT", maintenance, operator, {"enabled": "yes"}),
        ("PUT", maintenance, operator, {"enabled": 1}),
        ("PUT", maintenance, operator, {}),
    ]
    for method, path, token, body in cases:
        result = running.call(method, path, token, body)
        assert result.status_code == 422, (path, body, result.json)
        reason_of(result)
    for soc in ("NaN", "Infinity", "1e999"):
        result = raw_request(running, "POST", start, f'{{"target_soc": {soc}}}', alice)
        assert result.status_code in (400, 422), (soc, result.json)
        reason_of(result)
    assert running.watcher.state(EVSE).status == "Available"
    assert running.watcher.state(EVSE).maintenance is False
