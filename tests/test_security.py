"""The API's security rules, end to end over the in-process CSMS: drivers cannot touch each
other's sessions or reservations, roles are enforced, bad tokens are 401s, plain HTTP only
serves anonymous reads, logins are rate limited, bodies are bounded and only known fields
are read, and refresh tokens rotate with theft detection."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import falcon.testing
import jwt
import pytest

from gateway.app import create_app
from tests import api_fixtures
from tests.api_fixtures import EVSE_IDS, HTTPS_BASE, PASSWORD, Running, next_event

running = api_fixtures.running  # the fixture (an assignment, so tests may shadow it)

pytestmark = pytest.mark.timeout(120)

EVSE = EVSE_IDS[0]
SECRET = b"s" * 32
ISSUER, AUDIENCE = "smartcharge", "smartcharge-api"


def reason_of(result: falcon.testing.Result) -> str:
    body = result.json
    assert isinstance(body, dict), result.text
    reason = body.get("reason")
    assert isinstance(reason, str), body
    assert reason.strip(), body
    return reason


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def signed(secret: bytes = SECRET, **overrides: Any) -> str:
    """An access token as the fixture's authenticator would issue, with ``overrides``."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": "someone",
        "email": "someone@example.com",
        "role": "driver",
        "iat": now,
        "nbf": now,
        "exp": now + 900,
        "iss": ISSUER,
        "aud": AUDIENCE,
    }
    claims.update(overrides)
    return jwt.encode(claims, secret, algorithm="HS256")


def raw_request(
    running: Running, method: str, path: str, body: str | bytes, token: str | None = None
) -> falcon.testing.Result:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return running.client.simulate_request(
        method, path, body=body, headers=headers, protocol="https"
    )


# -- 1. one driver cannot touch another's things -------------------------------------------


@pytest.mark.integration
def test_another_driver_cannot_cancel_a_reservation(running: Running) -> None:
    alice, _ = running.driver("alice@example.com")
    bob, _ = running.driver("bob@example.com")
    reserved = running.call("POST", f"/api/v1/evses/{EVSE}/reservation", alice)
    assert reserved.status_code == 201, reserved.json
    running.watcher.wait_for(running.watcher.status_is(EVSE, "Reserved"), "Reserved")

    cancelled = running.call("DELETE", f"/api/v1/evses/{EVSE}/reservation", bob)

    assert cancelled.status_code == 404, cancelled.json
    assert EVSE in reason_of(cancelled)
    still = running.call("GET", f"/api/v1/evses/{EVSE}").json["reservation"]
    assert still is not None
    assert still["id"] == reserved.json["id"]
    assert "driver_id" not in still  # the public view does not say whose it is
    assert running.system.charging.reservation(EVSE) is not None
    row = running.storage.reservations.get(reserved.json["id"])
    assert row is not None
    assert row.outcome is None
    assert running.watcher.state(EVSE).status == "Reserved"


@pytest.mark.integration
def test_another_driver_cannot_stop_read_or_see_notes_of_a_session_but_an_operator_can_stop_it(
    running: Running,
) -> None:
    alice, alice_id = running.driver("alice@example.com")
    bob, _ = running.driver("bob@example.com")
    operator = running.operator()
    live = running.live(alice_id)

    started = running.call("POST", f"/api/v1/evses/{EVSE}/start", alice, {"target_soc": 100})
    assert started.status_code == 201, started.json
    session_id = started.json["session_id"]
    # session_started is stored before it is pushed: a barrier for the session row too.
    note = next_event(live, "notification")
    assert note.data["kind"] == "session_started"
    running.watcher.wait_for(running.watcher.status_is(EVSE, "Charging"), "Alice charging")

    stopped = running.call("POST", f"/api/v1/evses/{EVSE}/stop", bob)

    assert stopped.status_code in (403, 404), stopped.json
    assert "not yours" in reason_of(stopped) or "no session" in reason_of(stopped)
    # Barrier: a live round trip to the station, after Bob's attempt.
    info = running.call("GET", f"/api/v1/evses/{EVSE}/info", alice)
    assert info.status_code == 200, info.json
    assert info.json["evse"]["status"] == "Charging"
    assert info.json["evse"]["session_id"] == session_id
    # And the next meter event still shows Alice charging.
    seen = len(running.watcher.history[EVSE])
    running.watcher.wait_for(lambda: len(running.watcher.history[EVSE]) > seen, "a meter event")
    latest = running.watcher.history[EVSE][seen]
    assert latest.status == "Charging"
    assert latest.session_id == session_id

    alice_sessions = running.call("GET", "/api/v1/me/sessions", alice).json["sessions"]
    assert [s["id"] for s in alice_sessions] == [session_id]
    bob_sessions = running.call("GET", "/api/v1/me/sessions", bob)
    assert bob_sessions.status_code == 200
    assert session_id not in json.dumps(bob_sessions.json)
    assert bob_sessions.json["sessions"] == []

    alice_notes = running.call("GET", "/api/v1/me/notifications", alice).json["notifications"]
    assert [n["kind"] for n in alice_notes] == ["session_started"]
    bob_notes = running.call("GET", "/api/v1/me/notifications", bob)
    assert bob_notes.status_code == 200
    assert bob_notes.json["notifications"] == []
    assert session_id not in json.dumps(bob_notes.json)

    by_operator = running.call("POST", f"/api/v1/evses/{EVSE}/stop", operator)
    assert by_operator.status_code == 200, by_operator.json
    assert by_operator.json["accepted"] is True
    running.watcher.wait_for(
        lambda: running.watcher.state(EVSE).status != "Charging", "the session stopped"
    )
    ended = next_event(live, "notification")
    assert ended.data["kind"] == "session_ended"
    assert ended.data["data"]["session_id"] == session_id


# -- 2. roles --------------------------------------------------------------------------------


@pytest.mark.integration
def test_a_driver_token_is_refused_on_maintenance_and_an_operator_token_is_not(
    running: Running,
) -> None:
    alice, _ = running.driver("alice@example.com")
    operator = running.operator()

    refused = running.call("PUT", f"/api/v1/evses/{EVSE}/maintenance", alice, {"enabled": True})
    assert refused.status_code == 403, refused.json
    assert "operator" in reason_of(refused)
    assert running.watcher.state(EVSE).maintenance is False

    allowed = running.call("PUT", f"/api/v1/evses/{EVSE}/maintenance", operator, {"enabled": True})
    assert allowed.status_code == 200, allowed.json
    running.watcher.wait_for(running.watcher.status_is(EVSE, "Unavailable"), "Unavailable")


@pytest.mark.integration
def test_a_driver_token_is_refused_on_the_operator_event_stream(running: Running) -> None:
    alice, _ = running.driver("alice@example.com")

    by_header = running.call("GET", "/api/v1/events", alice)
    assert by_header.status_code == 403, by_header.text
    assert "operator" in reason_of(by_header)

    by_query = running.client.simulate_get(
        "/api/v1/events", params={"access_token": alice}, protocol="https"
    )
    assert by_query.status_code == 403, by_query.text
    reason_of(by_query)


# -- 3. bad tokens -------------------------------------------------------------------------


def _tampered(token: str) -> str:
    header, payload, signature = token.split(".")
    raw = bytearray(base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4)))
    raw[0] ^= 0x01
    return f"{header}.{payload}.{b64url(bytes(raw))}"


def _alg_none(token: str) -> str:
    _, payload, _ = token.split(".")
    header = b64url(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    return f"{header}.{payload}."


def _role_raised_without_resigning(token: str) -> str:
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["role"] = "operator"
    return f"{header}.{b64url(json.dumps(claims).encode())}.{signature}"


BAD_TOKENS = {
    "tampered signature": lambda real, uid: _tampered(real),
    "alg none": lambda real, uid: _alg_none(real),
    "role raised, old signature": lambda real, uid: _role_raised_without_resigning(real),
    "expired": lambda real, uid: signed(
        sub=uid,
        iat=int(time.time()) - 7200,
        nbf=int(time.time()) - 7200,
        exp=int(time.time()) - 3600,
    ),
    "another secret": lambda real, uid: signed(b"t" * 32, sub=uid),
    "wrong audience": lambda real, uid: signed(sub=uid, aud="someone-else"),
    "wrong issuer": lambda real, uid: signed(sub=uid, iss="evil"),
    "no expiry": lambda real, uid: jwt.encode(
        {
            "sub": uid,
            "email": "a@example.com",
            "role": "driver",
            "iat": int(time.time()),
            "iss": ISSUER,
            "aud": AUDIENCE,
        },
        SECRET,
        algorithm="HS256",
    ),
    "not yet valid": lambda real, uid: signed(sub=uid, nbf=int(time.time()) + 3600),
    "unknown role": lambda real, uid: signed(sub=uid, role="admin"),
    "string expiry": lambda real, uid: signed(sub=uid, exp=str(int(time.time()) + 900)),
    "not a jwt": lambda real, uid: "not.a.jwt",
}


@pytest.mark.integration
@pytest.mark.parametrize("kind", list(BAD_TOKENS))
def test_a_bad_access_token_gets_401_with_a_reason_and_a_bearer_challenge(
    running: Running, kind: str
) -> None:
    real, user_id = running.driver("alice@example.com")
    assert running.call("GET", "/api/v1/me/sessions", real).status_code == 200
    token = BAD_TOKENS[kind](real, user_id)

    result = running.call("GET", "/api/v1/me/sessions", token)

    assert result.status_code == 401, result.json
    reason_of(result)
    assert result.headers.get("WWW-Authenticate") == "Bearer"


@pytest.mark.integration
def test_a_valid_token_signed_with_the_right_secret_is_accepted(running: Running) -> None:
    """The control for the bad-token cases: ``signed`` itself makes acceptable tokens."""
    _, user_id = running.driver("alice@example.com")
    result = running.call("GET", "/api/v1/me/sessions", signed(sub=user_id))
    assert result.status_code == 200, result.json


@pytest.mark.integration
@pytest.mark.parametrize("header", ["Basic xyz", "Bearer", "Bearer    ", "xyz", "Token abc"])
def test_a_garbage_authorization_header_gets_401_with_a_bearer_challenge(
    running: Running, header: str
) -> None:
    result = running.client.simulate_get(
        "/api/v1/me/sessions", headers={"Authorization": header}, protocol="https"
    )
    assert result.status_code == 401, result.json
    reason_of(result)
    assert result.headers.get("WWW-Authenticate") == "Bearer"


@pytest.mark.integration
def test_no_token_on_an_authenticated_endpoint_gets_401(running: Running) -> None:
    result = running.call("GET", "/api/v1/me/sessions")
    assert result.status_code == 401, result.json
    reason_of(result)
    assert result.headers.get("WWW-Authenticate") == "Bearer"


# -- 4. plain HTTP -----------------------------------------------------------------------


@pytest.mark.integration
def test_writes_over_plain_http_get_403_naming_the_https_url(running: Running) -> None:
    alice, _ = running.driver("alice@example.com")
    operator = running.operator()
    calls = [
        ("POST", "/api/v1/auth/login", None, {"email": "alice@example.com", "password": PASSWORD}),
        ("POST", "/api/v1/auth/register", None, {"email": "eve@example.com", "password": PASSWORD}),
        ("POST", f"/api/v1/evses/{EVSE}/start", alice, {}),
        ("PUT", f"/api/v1/evses/{EVSE}/maintenance", operator, {"enabled": True}),
    ]
    for method, path, token, body in calls:
        result = running.call(method, path, token, body, https=False)
        assert result.status_code == 403, (path, result.json)
        assert f"{HTTPS_BASE}{path}" in reason_of(result), result.json
    assert running.storage.users.by_email("eve@example.com") is None
    assert running.watcher.state(EVSE).status == "Available"
    assert running.watcher.state(EVSE).maintenance is False


@pytest.mark.integration
def test_a_get_carrying_a_token_over_plain_http_gets_403(running: Running) -> None:
    alice, _ = running.driver("alice@example.com")
    for path in ("/api/v1/me/sessions", "/api/v1/stations"):
        result = running.call("GET", path, alice, https=False)
        assert result.status_code == 403, (path, result.json)
        assert HTTPS_BASE in reason_of(result)
    by_query = running.client.simulate_get(
        "/api/v1/me/events", params={"access_token": alice}, protocol="http"
    )
    assert by_query.status_code == 403, by_query.text
    assert HTTPS_BASE in reason_of(by_query)


@pytest.mark.integration
def test_a_public_get_without_a_token_over_plain_http_is_served(running: Running) -> None:
    for path in ("/api/v1/stations", f"/api/v1/evses/{EVSE}", "/healthz"):
        result = running.call("GET", path, https=False)
        assert result.status_code == 200, (path, result.json)


# -- 5. login rate limit -----------------------------------------------------------------


@pytest.mark.integration
def test_login_is_rate_limited_per_email_with_a_retry_after(running: Running) -> None:
    app = create_app(
        running.system, auth=running.auth, storage=running.storage, https_base=HTTPS_BASE
    )  # the default login limits
    client = falcon.testing.TestClient(app)
    running.auth.create_user("victim@example.com", PASSWORD, "driver")
    running.auth.create_user("other@example.com", PASSWORD, "driver")

    def login(email: str, password: str, ip: str) -> falcon.testing.Result:
        return client.simulate_post(
            "/api/v1/auth/login",
            protocol="https",
            remote_addr=ip,
            json={"email": email, "password": password},
        )

    statuses = []
    for attempt in range(50):
        result = login("victim@example.com", f"wrong password {attempt}", "10.0.0.1")
        statuses.append(result.status_code)
        if result.status_code == 429:
            break
    assert statuses[-1] == 429, statuses
    assert set(statuses[:-1]) == {401}, statuses
    retry_after = result.headers.get("Retry-After")
    assert retry_after is not None
    assert retry_after.isdigit()
    assert 0 < int(retry_after) <= 60
    assert "too many" in reason_of(result)

    # The account stays locked even with the right password, and from another address.
    assert login("victim@example.com", PASSWORD, "10.0.0.1").status_code == 429
    assert login("VICTIM@example.com ", PASSWORD, "10.0.0.9").status_code == 429
    # Someone else, elsewhere, is not affected.
    other = login("other@example.com", PASSWORD, "10.0.0.2")
    assert other.status_code == 200, other.json
    assert running.auth.verify(other.json["access_token"]).email == "other@example.com"


@pytest.mark.integration
def test_login_is_rate_limited_per_address(running: Running) -> None:
    client = falcon.testing.TestClient(
        create_app(
            running.system, auth=running.auth, storage=running.storage, https_base=HTTPS_BASE
        )
    )
    statuses = []
    for attempt in range(100):
        result = client.simulate_post(
            "/api/v1/auth/login",
            protocol="https",
            remote_addr="10.0.0.3",
            json={"email": f"nobody{attempt}@example.com", "password": "wrong password"},
        )
        statuses.append(result.status_code)
        if result.status_code == 429:
            break
    assert statuses[-1] == 429, statuses
    assert int(result.headers["Retry-After"]) > 0
    reason_of(result)
    elsewhere = client.simulate_post(
        "/api/v1/auth/login",
        protocol="https",
        remote_addr="10.0.0.4",
        json={"email": "nobody-else@example.com", "password": "wrong password"},
    )
    assert elsewhere.status_code == 401, elsewhere.json


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


# -- 8. refresh tokens -------------------------------------------------------------------


@pytest.mark.integration
def test_a_refresh_token_works_once_and_its_reuse_revokes_the_rotated_one(
    running: Running,
) -> None:
    registered = running.call(
        "POST", "/api/v1/auth/register", body={"email": "alice@example.com", "password": PASSWORD}
    )
    assert registered.status_code == 201, registered.json
    first = registered.json["refresh_token"]

    rotated = running.call("POST", "/api/v1/auth/refresh", body={"refresh_token": first})
    assert rotated.status_code == 200, rotated.json
    second = rotated.json["refresh_token"]
    assert second != first
    assert running.auth.verify(rotated.json["access_token"]).email == "alice@example.com"

    reused = running.call("POST", "/api/v1/auth/refresh", body={"refresh_token": first})
    assert reused.status_code == 401, reused.json
    assert "already used" in reason_of(reused)
    assert reused.headers.get("WWW-Authenticate") == "Bearer"

    stolen = running.call("POST", "/api/v1/auth/refresh", body={"refresh_token": second})
    assert stolen.status_code == 401, stolen.json
    assert "revoked" in reason_of(stolen)

    # A fresh login starts a new family that works.
    login = running.call(
        "POST", "/api/v1/auth/login", body={"email": "alice@example.com", "password": PASSWORD}
    )
    assert login.status_code == 200, login.json
    again = running.call(
        "POST", "/api/v1/auth/refresh", body={"refresh_token": login.json["refresh_token"]}
    )
    assert again.status_code == 200, again.json


@pytest.mark.integration
def test_logout_revokes_the_refresh_token(running: Running) -> None:
    running.driver("alice@example.com")
    login = running.call(
        "POST", "/api/v1/auth/login", body={"email": "alice@example.com", "password": PASSWORD}
    )
    assert login.status_code == 200, login.json
    refresh = login.json["refresh_token"]

    out = running.call("POST", "/api/v1/auth/logout", body={"refresh_token": refresh})
    assert out.status_code == 204

    after = running.call("POST", "/api/v1/auth/refresh", body={"refresh_token": refresh})
    assert after.status_code == 401, after.json
    assert "revoked" in reason_of(after)
    unknown = running.call("POST", "/api/v1/auth/refresh", body={"refresh_token": "made-up"})
    assert unknown.status_code == 401, unknown.json
    reason_of(unknown)
