"""The API's security rules, end to end over the in-process CSMS: tokens and logins. Bad access
tokens are 401s with a bearer challenge, logins are rate limited per email and per address, and
refresh tokens rotate with theft detection."""

from __future__ import annotations

import base64
import hashlib
import json
import time
from typing import Any

import falcon.testing
import jwt
import pytest
from sqlalchemy import text

from gateway.app import create_app
from gateway.auth import REFRESH_REUSE_GRACE_S
from tests import api_fixtures
from tests.api_fixtures import HTTPS_BASE, PASSWORD, Running
from tests.security_support import reason_of

running = api_fixtures.running  # the fixture (an assignment, so tests may shadow it)

pytestmark = pytest.mark.timeout(120)
SECRET = b"s" * 32
ISSUER, AUDIENCE = "smartcharge", "smartcharge-api"


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


# -- 5. login rate limit -----------------------------------------------------------------


@pytest.mark.integration
def test_login_failures_are_rate_limited_per_email_and_address_with_a_retry_after(
    running: Running,
) -> None:
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

    # The guessing address waits even with the right password; the owner elsewhere does not.
    assert login("victim@example.com", PASSWORD, "10.0.0.1").status_code == 429
    owner = login("VICTIM@example.com ", PASSWORD, "10.0.0.9")
    assert owner.status_code == 200, owner.json
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


# -- 8. refresh tokens -------------------------------------------------------------------


@pytest.mark.integration
def test_a_refresh_token_rotates_and_its_reuse_revokes_the_rotated_one(
    running: Running,
) -> None:
    """Reuse within the grace window gets the same pair; after it (the token's ``used_at``
    moved back past the window, as time would) the reuse revokes the family
    (tests/test_auth_refresh_grace.py moves a clock instead)."""
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

    again = running.call("POST", "/api/v1/auth/refresh", body={"refresh_token": first})
    assert again.status_code == 200, again.json
    assert again.json == rotated.json  # another tab, within the grace window

    digest = hashlib.sha256(first.encode()).hexdigest()
    with running.storage.engine.begin() as conn:
        conn.execute(
            text("UPDATE refresh_tokens SET used_at = used_at - :ms WHERE token_hash = :h"),
            {"ms": (REFRESH_REUSE_GRACE_S + 1) * 1000, "h": digest},
        )
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
