"""Local authentication (gateway/auth.py): register, login and verify, and the password hashes.

The repositories are small thread-safe in-memory stand-ins for the storage layer
(tests/auth_support.py), and the clock is a :class:`FakeClock` the tests move by hand.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import argon2
import pytest

from gateway.auth import LocalAuthenticator, Principal
from gateway.errors import http_status_of
from storage.errors import (
    AuthError,
    EmailTaken,
    InvalidCredentials,
    InvalidEmail,
    InvalidToken,
    WeakPassword,
)
from tests import auth_support
from tests.auth_support import PASSWORD, SECRET, DuplicateError, MemoryRefreshTokens, MemoryUsers

auth = auth_support.auth
clock = auth_support.clock
make_auth = auth_support.make_auth
users = auth_support.users


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


def test_an_email_with_a_nul_byte_is_an_unknown_account_not_a_storage_error(
    auth: LocalAuthenticator,
) -> None:
    """PostgreSQL refuses NUL in text (a 500 before): such an email is never looked up."""
    auth.register("ada@example.com", PASSWORD)
    with pytest.raises(InvalidCredentials):
        auth.login("ada\x00@example.com", PASSWORD)
    with pytest.raises(InvalidEmail):
        auth.register("eve\x00@example.com", PASSWORD)
