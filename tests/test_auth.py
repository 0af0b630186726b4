"""Local authentication (gateway/auth.py) and login rate limits (gateway/ratelimit.py).

The repositories are small thread-safe in-memory stand-ins for the storage layer, and the
clock is a :class:`FakeClock` the tests move by hand.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import os
import stat
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

import argon2
import jwt
import pytest

from gateway.auth import LocalAuthenticator, Principal, Tokens, load_or_create_secret
from gateway.errors import http_status_of
from gateway.ratelimit import LoginThrottle, SlidingWindowLimiter
from storage.errors import (
    AuthError,
    EmailTaken,
    InvalidCredentials,
    InvalidEmail,
    InvalidToken,
    WeakPassword,
)

SECRET = b"k" * 32
PASSWORD = "correct horse battery"


def cheap_hasher() -> argon2.PasswordHasher:
    return argon2.PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)


class FakeClock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


# -- in-memory repositories --------------------------------------------------------------


class DuplicateError(Exception):
    """What the storage layer raises for a unique-constraint violation."""


@dataclasses.dataclass(frozen=True)
class User:
    id: str
    email: str
    password_hash: str
    role: str


@dataclasses.dataclass(frozen=True)
class RefreshToken:
    user_id: str
    family_id: str
    created_at: int
    expires_at: int
    used_at: int | None = None
    revoked_at: int | None = None


class MemoryUsers:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.rows: dict[str, User] = {}

    def create(self, email: str, password_hash: str, role: str) -> User:
        with self._lock:
            if any(u.email == email for u in self.rows.values()):
                raise DuplicateError(email)
            user = User(uuid.uuid4().hex, email, password_hash, role)
            self.rows[user.id] = user
            return user

    def get(self, user_id: str) -> User | None:
        with self._lock:
            return self.rows.get(user_id)

    def by_email(self, email: str) -> User | None:
        with self._lock:
            return next((u for u in self.rows.values() if u.email == email), None)

    def set_password_hash(self, user_id: str, password_hash: str) -> None:
        with self._lock:
            self.rows[user_id] = dataclasses.replace(
                self.rows[user_id], password_hash=password_hash
            )


class MemoryRefreshTokens:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.rows: dict[str, RefreshToken] = {}

    def add(
        self, token_hash: str, user_id: str, family_id: str, expires_at: int, *, created_at: int
    ) -> None:
        with self._lock:
            self.rows[token_hash] = RefreshToken(user_id, family_id, created_at, expires_at)

    def get(self, token_hash: str) -> RefreshToken | None:
        with self._lock:
            return self.rows.get(token_hash)

    def mark_used(self, token_hash: str, at: int) -> bool:
        with self._lock:
            row = self.rows.get(token_hash)
            if row is None or row.used_at is not None:
                return False
            self.rows[token_hash] = dataclasses.replace(row, used_at=at)
            return True

    def revoke_family(self, family_id: str, at: int) -> None:
        with self._lock:
            for key, row in self.rows.items():
                if row.family_id == family_id and row.revoked_at is None:
                    self.rows[key] = dataclasses.replace(row, revoked_at=at)


# -- fixtures ----------------------------------------------------------------------------


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def users() -> MemoryUsers:
    return MemoryUsers()


@pytest.fixture
def make_auth(users: MemoryUsers, clock: FakeClock) -> Callable[..., LocalAuthenticator]:
    refresh_tokens = MemoryRefreshTokens()

    def make(**overrides: Any) -> LocalAuthenticator:
        options: dict[str, Any] = {"secret": SECRET, "clock": clock, "hasher": cheap_hasher()}
        options.update(overrides)
        return LocalAuthenticator(users, refresh_tokens, **options)

    return make


@pytest.fixture
def auth(make_auth: Callable[..., LocalAuthenticator]) -> LocalAuthenticator:
    return make_auth()


def b64url(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


# -- register, login, verify ---------------------------------------------------------------


def test_register_returns_bearer_tokens_for_a_driver(auth: LocalAuthenticator) -> None:
    tokens = auth.register("  Ada@Example.COM ", PASSWORD)
    assert tokens.as_json() == {
        "access_token": tokens.access_token,
        "token_type": "Bearer",
        "expires_in": 900,
        "refresh_token": tokens.refresh_token,
    }
    principal = auth.verify(tokens.access_token)
    assert principal.email == "ada@example.com"
    assert principal.role == "driver"


def test_login_with_the_right_password_gives_working_tokens(auth: LocalAuthenticator) -> None:
    registered = auth.verify(auth.register("ada@example.com", PASSWORD).access_token)
    tokens = auth.login("ADA@example.com", PASSWORD)
    assert auth.verify(tokens.access_token) == registered


def test_unknown_email_and_wrong_password_fail_alike(auth: LocalAuthenticator) -> None:
    auth.register("ada@example.com", PASSWORD)
    with pytest.raises(InvalidCredentials) as unknown:
        auth.login("bob@example.com", PASSWORD)
    with pytest.raises(InvalidCredentials) as wrong:
        auth.login("ada@example.com", "wrong password!")
    assert str(unknown.value) == str(wrong.value) == "wrong email or password"
    assert http_status_of(unknown.value) == http_status_of(wrong.value) == 401


def test_unknown_email_still_spends_a_password_verification(
    make_auth: Callable[..., LocalAuthenticator],
) -> None:
    verified: list[str] = []

    class CountingHasher(argon2.PasswordHasher):
        def verify(self, hash: str | bytes, password: str | bytes) -> Literal[True]:  # noqa: A002
            verified.append(str(hash))
            return super().verify(hash, password)

    auth = make_auth(hasher=CountingHasher(time_cost=1, memory_cost=8, parallelism=1))
    with pytest.raises(InvalidCredentials):
        auth.login("nobody@example.com", PASSWORD)
    assert len(verified) == 1
    assert verified[0].startswith("$argon2id$")


def test_email_already_registered_is_refused(auth: LocalAuthenticator) -> None:
    auth.register("ada@example.com", PASSWORD)
    with pytest.raises(EmailTaken, match=r"ada@example\.com") as taken:
        auth.register("ADA@example.com", PASSWORD)
    assert http_status_of(taken.value) == 409


def test_duplicate_error_from_a_racing_insert_means_email_taken(
    make_auth: Callable[..., LocalAuthenticator], users: MemoryUsers
) -> None:
    # Another request inserted the same email between our check and our insert.
    users.by_email = lambda email: None  # type: ignore[method-assign]
    auth = make_auth(duplicate_error=DuplicateError)
    auth.register("ada@example.com", PASSWORD)
    with pytest.raises(EmailTaken):
        auth.register("ada@example.com", PASSWORD)


@pytest.mark.parametrize("password", ["short", "123456789", "x" * 129])
def test_weak_passwords_are_refused(auth: LocalAuthenticator, password: str) -> None:
    with pytest.raises(WeakPassword, match="10 to 128 characters") as weak:
        auth.register("ada@example.com", password)
    assert http_status_of(weak.value) == 422


@pytest.mark.parametrize(
    "email", ["", "ada", "ada@", "@example.com", "ada@example", "a da@example.com", "a@b@c.de"]
)
def test_implausible_emails_are_refused(auth: LocalAuthenticator, email: str) -> None:
    with pytest.raises(InvalidEmail, match="not a valid email") as invalid:
        auth.register(email, PASSWORD)
    assert http_status_of(invalid.value) == 422


def test_created_operator_carries_its_role_into_the_principal(
    auth: LocalAuthenticator,
) -> None:
    created = auth.create_user("ops@example.com", PASSWORD, "operator")
    assert created == Principal(user_id=created.user_id, email="ops@example.com", role="operator")
    assert auth.verify(auth.login("ops@example.com", PASSWORD).access_token) == created


def test_errors_share_the_smartcharge_root() -> None:
    from storage.errors import SmartchargeError

    for error in (InvalidCredentials, InvalidToken, EmailTaken, WeakPassword, InvalidEmail):
        assert issubclass(error, AuthError)
    assert issubclass(AuthError, SmartchargeError)


# -- password hashes ---------------------------------------------------------------------


def test_default_hasher_stores_argon2id_hashes(
    make_auth: Callable[..., LocalAuthenticator], users: MemoryUsers
) -> None:
    auth = make_auth(hasher=None)
    auth.register("ada@example.com", PASSWORD)
    stored = users.rows.popitem()[1].password_hash
    assert stored.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert PASSWORD not in stored


def test_login_rehashes_a_password_hashed_with_old_parameters(
    make_auth: Callable[..., LocalAuthenticator], users: MemoryUsers
) -> None:
    make_auth().register("ada@example.com", PASSWORD)
    old_hash = next(iter(users.rows.values())).password_hash
    stronger = argon2.PasswordHasher(time_cost=2, memory_cost=16, parallelism=1)
    make_auth(hasher=stronger).login("ada@example.com", PASSWORD)
    new_hash = next(iter(users.rows.values())).password_hash
    assert new_hash != old_hash
    assert not stronger.check_needs_rehash(new_hash)
    make_auth(hasher=stronger).login("ada@example.com", PASSWORD)  # still the same password


class UsersWithoutRehash:
    """A repo that cannot update hashes (``PasswordHashUpdater`` is optional)."""

    def __init__(self, users: MemoryUsers) -> None:
        self.create, self.get, self.by_email = users.create, users.get, users.by_email


def test_login_works_when_the_repo_cannot_store_a_rehash(
    make_auth: Callable[..., LocalAuthenticator], users: MemoryUsers
) -> None:
    make_auth().register("ada@example.com", PASSWORD)
    old_hash = next(iter(users.rows.values())).password_hash
    stronger = argon2.PasswordHasher(time_cost=2, memory_cost=16, parallelism=1)
    auth = LocalAuthenticator(
        UsersWithoutRehash(users), MemoryRefreshTokens(), secret=SECRET, hasher=stronger
    )
    auth.login("ada@example.com", PASSWORD)
    assert next(iter(users.rows.values())).password_hash == old_hash


# -- access tokens -----------------------------------------------------------------------


def test_access_token_expires_after_fifteen_minutes(
    auth: LocalAuthenticator, clock: FakeClock
) -> None:
    token = auth.register("ada@example.com", PASSWORD).access_token
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 900
    assert {"sub", "email", "role", "iat", "nbf", "exp", "iss", "aud", "jti"} <= claims.keys()
    clock.advance(899)
    auth.verify(token)
    clock.advance(1)
    with pytest.raises(InvalidToken, match="expired"):
        auth.verify(token)


def test_access_token_from_the_future_is_not_yet_valid(
    auth: LocalAuthenticator, clock: FakeClock
) -> None:
    token = auth.register("ada@example.com", PASSWORD).access_token
    clock.advance(-60)
    with pytest.raises(InvalidToken, match="not yet valid"):
        auth.verify(token)


def test_tampered_signature_is_refused(auth: LocalAuthenticator) -> None:
    header, payload, signature = auth.register("ada@example.com", PASSWORD).access_token.split(".")
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
    with pytest.raises(InvalidToken, match="invalid access token"):
        auth.verify(f"{header}.{payload}.{flipped}")


def test_tampered_claims_are_refused(auth: LocalAuthenticator) -> None:
    token = auth.register("ada@example.com", PASSWORD).access_token
    header, _, signature = token.split(".")
    claims = jwt.decode(token, options={"verify_signature": False})
    forged = b64url({**claims, "role": "operator"})
    with pytest.raises(InvalidToken):
        auth.verify(f"{header}.{forged}.{signature}")


def test_unsigned_alg_none_token_is_refused(auth: LocalAuthenticator) -> None:
    token = auth.register("ada@example.com", PASSWORD).access_token
    claims = jwt.decode(token, options={"verify_signature": False})
    unsigned = f"{b64url({'alg': 'none', 'typ': 'JWT'})}.{b64url(claims)}."
    with pytest.raises(InvalidToken):
        auth.verify(unsigned)


def test_token_signed_with_another_secret_is_refused(
    auth: LocalAuthenticator, make_auth: Callable[..., LocalAuthenticator]
) -> None:
    auth.register("ada@example.com", PASSWORD)
    other = make_auth(secret=b"o" * 32)
    with pytest.raises(InvalidToken):
        auth.verify(other.login("ada@example.com", PASSWORD).access_token)


@pytest.mark.parametrize(
    ("issuer", "audience"), [("someone-else", "smartcharge-api"), ("smartcharge", "other-api")]
)
def test_wrong_issuer_or_audience_is_refused(
    auth: LocalAuthenticator,
    make_auth: Callable[..., LocalAuthenticator],
    issuer: str,
    audience: str,
) -> None:
    auth.register("ada@example.com", PASSWORD)
    foreign = make_auth(issuer=issuer, audience=audience)
    with pytest.raises(InvalidToken):
        auth.verify(foreign.login("ada@example.com", PASSWORD).access_token)


def test_token_without_required_claims_is_refused(auth: LocalAuthenticator) -> None:
    token = jwt.encode({"sub": "u1", "role": "driver"}, SECRET, algorithm="HS256")
    with pytest.raises(InvalidToken):
        auth.verify(token)


def test_garbage_is_an_invalid_token(auth: LocalAuthenticator) -> None:
    with pytest.raises(InvalidToken):
        auth.verify("not.a.jwt")


def test_short_secret_is_refused(users: MemoryUsers) -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        LocalAuthenticator(users, MemoryRefreshTokens(), secret=b"short", hasher=cheap_hasher())


# -- refresh tokens ----------------------------------------------------------------------


def test_refresh_rotates_the_refresh_token(auth: LocalAuthenticator) -> None:
    first = auth.register("ada@example.com", PASSWORD)
    second = auth.refresh(first.refresh_token)
    assert second.refresh_token != first.refresh_token
    assert auth.verify(second.access_token) == auth.verify(first.access_token)
    third = auth.refresh(second.refresh_token)
    auth.verify(third.access_token)


def test_refresh_tokens_are_stored_only_as_digests() -> None:
    tokens = MemoryRefreshTokens()
    auth = LocalAuthenticator(MemoryUsers(), tokens, secret=SECRET, hasher=cheap_hasher())
    issued = auth.register("ada@example.com", PASSWORD).refresh_token
    assert len(issued) >= 43
    (stored,) = tokens.rows
    assert issued not in stored
    assert stored == hashlib.sha256(issued.encode()).hexdigest()


def test_reusing_a_spent_refresh_token_revokes_the_whole_family(
    auth: LocalAuthenticator,
) -> None:
    first = auth.register("ada@example.com", PASSWORD)
    other_login = auth.login("ada@example.com", PASSWORD)
    second = auth.refresh(first.refresh_token)  # the thief, say
    with pytest.raises(InvalidToken, match="already used"):
        auth.refresh(first.refresh_token)  # the victim, with the old copy
    with pytest.raises(InvalidToken, match="revoked"):
        auth.refresh(second.refresh_token)  # the thief is out too
    auth.refresh(other_login.refresh_token)  # another login is a separate family


def test_concurrent_refreshes_with_one_token_let_at_most_one_through(
    auth: LocalAuthenticator,
) -> None:
    token = auth.register("ada@example.com", PASSWORD).refresh_token

    def attempt(_: int) -> Tokens | None:
        try:
            return auth.refresh(token)
        except InvalidToken:
            return None

    with ThreadPoolExecutor(max_workers=8) as pool:
        winners = [t for t in pool.map(attempt, range(8)) if t is not None]
    assert len(winners) <= 1
    for winner in winners:  # the reuse revoked the family: the winner's token is dead too
        with pytest.raises(InvalidToken):
            auth.refresh(winner.refresh_token)


def test_expired_refresh_token_is_refused(auth: LocalAuthenticator, clock: FakeClock) -> None:
    tokens = auth.register("ada@example.com", PASSWORD)
    clock.advance(30 * 86400)
    with pytest.raises(InvalidToken, match="expired"):
        auth.refresh(tokens.refresh_token)


def test_refresh_token_lives_thirty_days(auth: LocalAuthenticator, clock: FakeClock) -> None:
    tokens = auth.register("ada@example.com", PASSWORD)
    clock.advance(30 * 86400 - 1)
    auth.refresh(tokens.refresh_token)


def test_unknown_refresh_token_is_refused(auth: LocalAuthenticator) -> None:
    with pytest.raises(InvalidToken, match="unknown"):
        auth.refresh("made-up")
    with pytest.raises(InvalidToken, match="unknown"):
        auth.logout("made-up")


def test_logout_revokes_the_family_and_is_idempotent(auth: LocalAuthenticator) -> None:
    first = auth.register("ada@example.com", PASSWORD)
    second = auth.refresh(first.refresh_token)
    auth.logout(first.refresh_token)  # any token of the family ends the session
    with pytest.raises(InvalidToken, match="revoked"):
        auth.refresh(second.refresh_token)
    auth.logout(second.refresh_token)


def test_refresh_of_a_deleted_user_is_refused(auth: LocalAuthenticator, users: MemoryUsers) -> None:
    tokens = auth.register("ada@example.com", PASSWORD)
    users.rows.clear()
    with pytest.raises(InvalidToken, match="no longer exists"):
        auth.refresh(tokens.refresh_token)


def test_flows_work_on_the_real_sqlite_storage(tmp_path: Path, clock: FakeClock) -> None:
    from storage import DuplicateError as StorageDuplicateError
    from storage import open_storage

    store = open_storage(data_dir=tmp_path, clock_ms=lambda: int(clock() * 1000))
    try:
        auth = LocalAuthenticator(
            store.users,
            store.refresh_tokens,
            secret=SECRET,
            clock=clock,
            hasher=cheap_hasher(),
            duplicate_error=StorageDuplicateError,
        )
        first = auth.register("ada@example.com", PASSWORD)
        with pytest.raises(EmailTaken):
            auth.register("Ada@Example.com", PASSWORD)
        assert auth.verify(first.access_token).role == "driver"
        second = auth.refresh(first.refresh_token)
        with pytest.raises(InvalidToken, match="already used"):
            auth.refresh(first.refresh_token)
        with pytest.raises(InvalidToken, match="revoked"):
            auth.refresh(second.refresh_token)
        operator = auth.create_user("ops@example.com", PASSWORD, "operator")
        assert auth.verify(auth.login("ops@example.com", PASSWORD).access_token) == operator
        assert type(operator.role) is str
    finally:
        store.close()


# -- the signing secret ------------------------------------------------------------------


def test_secret_file_is_created_private_and_then_reused(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "jwt.secret"
    secret = load_or_create_secret(path)
    assert len(secret) == 32
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert load_or_create_secret(path) == secret
    assert [p.name for p in path.parent.iterdir()] == ["jwt.secret"]  # no temp file left


def test_truncated_secret_file_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "jwt.secret"
    path.write_bytes(b"short")
    with pytest.raises(ValueError, match="5 bytes"):
        load_or_create_secret(path)


# -- rate limits -------------------------------------------------------------------------


def test_limiter_allows_the_limit_then_says_how_long_to_wait(clock: FakeClock) -> None:
    limiter = SlidingWindowLimiter(3, 60.0, clock=clock)
    for _ in range(3):
        assert limiter.hit("ip") is None
        clock.advance(10)
    assert limiter.hit("ip") == pytest.approx(30.0)  # the first hit leaves the window at 60
    assert limiter.hit("other-ip") is None


def test_limiter_window_slides_rather_than_resets(clock: FakeClock) -> None:
    limiter = SlidingWindowLimiter(2, 60.0, clock=clock)
    assert limiter.hit("k") is None  # t=0
    clock.advance(50)
    assert limiter.hit("k") is None  # t=50
    clock.advance(10)
    assert limiter.hit("k") is None  # t=60: the t=0 hit has left
    assert limiter.hit("k") == pytest.approx(50.0)  # the t=50 hit leaves at 110
    clock.advance(50)
    assert limiter.hit("k") is None


def test_refused_hits_do_not_extend_the_wait(clock: FakeClock) -> None:
    limiter = SlidingWindowLimiter(1, 60.0, clock=clock)
    assert limiter.hit("k") is None
    for _ in range(5):
        clock.advance(10)
        assert limiter.hit("k") is not None
    clock.advance(10)
    assert limiter.hit("k") is None


def test_limiter_reset_forgets_a_key(clock: FakeClock) -> None:
    limiter = SlidingWindowLimiter(1, 60.0, clock=clock)
    limiter.hit("k")
    limiter.reset("k")
    assert limiter.hit("k") is None


def test_limiter_memory_is_bounded(clock: FakeClock) -> None:
    limiter = SlidingWindowLimiter(1, 60.0, clock=clock, max_keys=100)
    for n in range(1000):
        limiter.hit(n)
    assert len(limiter) <= 100
    clock.advance(61)
    limiter.hit("late")
    assert len(limiter) == 1  # the expired keys went


def test_limiter_is_exact_under_concurrent_hits() -> None:
    limiter = SlidingWindowLimiter(50, 60.0)
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda _: limiter.hit("k"), range(400)))
    assert results.count(None) == 50


def test_login_throttle_limits_per_email_and_per_ip(clock: FakeClock) -> None:
    throttle = LoginThrottle(
        per_email=SlidingWindowLimiter(5, 60.0, clock=clock),
        per_ip=SlidingWindowLimiter(20, 60.0, clock=clock),
    )
    for _ in range(5):
        assert throttle.attempt("10.0.0.1", "ada@example.com") is None
    assert throttle.attempt("10.0.0.2", "ADA@example.com") == pytest.approx(60.0)
    for n in range(15):
        assert throttle.attempt("10.0.0.1", f"user{n}@example.com") is None
    assert throttle.attempt("10.0.0.1", "new@example.com") is not None  # the IP's 21st
    throttle.succeeded("ada@example.com")
    assert throttle.attempt("10.0.0.3", "ada@example.com") is None
