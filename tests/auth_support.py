"""Shared by the local authentication tests (tests/test_auth_*.py): small thread-safe in-memory
stand-ins for the storage layer's users and refresh tokens, a :class:`FakeClock` the tests move
by hand, and the fixtures that build a :class:`gateway.auth.LocalAuthenticator` on them."""

from __future__ import annotations

import dataclasses
import threading
import uuid
from collections.abc import Callable
from typing import Any

import argon2
import pytest

from gateway.auth import LocalAuthenticator

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
    token_version: int = 0
    disabled_at: int | None = None


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

    def token_version(self, user_id: str) -> int | None:
        with self._lock:
            user = self.rows.get(user_id)
        return None if user is None or user.disabled_at is not None else user.token_version


class MemoryRefreshTokens:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.rows: dict[str, RefreshToken] = {}

    def add(
        self, token_hash: str, user_id: str, family_id: str, expires_at: int, *, created_at: int
    ) -> None:
        with self._lock:
            if token_hash in self.rows:  # as the storage layer's unique key does
                raise DuplicateError(token_hash)
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
