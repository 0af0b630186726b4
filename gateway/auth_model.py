"""What authentication is about, apart from how it is done: roles, the principal and its
tokens, the errors, the interface HTTP resources use (:class:`Authenticator`), what a local
backend needs from storage, and the email and password rules. :mod:`gateway.auth` is the
self-hosted backend; :mod:`gateway.firebase_auth` the Firebase one."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal, Protocol, get_args, runtime_checkable

from storage.errors import InvalidEmail, InvalidToken, WeakPassword

__all__ = [
    "MAX_PASSWORD_CHARS",
    "MIN_PASSWORD_CHARS",
    "ROLES",
    "Authenticator",
    "PasswordHashUpdater",
    "Principal",
    "RefreshTokenRecord",
    "RefreshTokenRepo",
    "Role",
    "Tokens",
    "UserRecord",
    "UserRepo",
    "check_access_claims",
    "check_password_policy",
    "normalize_email",
]

Role = Literal["driver", "operator"]
ROLES: frozenset[str] = frozenset(get_args(Role))

MIN_PASSWORD_CHARS = 10
MAX_PASSWORD_CHARS = 128
SECRET_BYTES = 32
_EMAIL_RE = re.compile(r"[^@\s\x00-\x1f\x7f]+@[^@\s.\x00-\x1f\x7f]+(\.[^@\s.\x00-\x1f\x7f]+)+")


@dataclass(frozen=True, slots=True)
class Principal:
    """Who made a request, as proven by a verified access token."""

    user_id: str
    email: str
    role: Role
    token_version: int = 0
    """The account's token version when the token was issued (see ``check_current``)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Tokens:
    """What a successful register/login/refresh returns (RFC 6749 section 5.1)."""

    access_token: str
    refresh_token: str
    expires_in: int
    token_type: str = "Bearer"

    def as_json(self) -> dict[str, str | int]:
        return {
            "access_token": self.access_token,
            "token_type": self.token_type,
            "expires_in": self.expires_in,
            "refresh_token": self.refresh_token,
        }


# -- the interface HTTP resources use --------------------------------------------------


class Authenticator(Protocol):
    def register(self, email: str, password: str) -> Tokens:
        """Create a driver account and log it in."""
        ...

    def login(self, email: str, password: str) -> Tokens: ...

    def refresh(self, refresh_token: str) -> Tokens:
        """Exchange a refresh token for new tokens; the old one stops working."""
        ...

    def logout(self, refresh_token: str) -> None:
        """End the login session the refresh token belongs to."""
        ...

    def verify(self, access_token: str) -> Principal: ...

    def check_current(self, principal: Principal) -> None:
        """Raise :class:`InvalidToken` if the principal's account was disabled or deleted, or
        its tokens revoked, since the token was issued. Called on every write request (a
        read may serve a revoked token until it expires)."""
        ...

    def create_user(self, email: str, password: str, role: Role) -> Principal:
        """Create an account without logging in (operators, seeding)."""
        ...


# -- what LocalAuthenticator needs from storage ----------------------------------------


class UserRecord(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def email(self) -> str: ...
    @property
    def password_hash(self) -> str: ...
    @property
    def role(self) -> str: ...
    @property
    def token_version(self) -> int: ...
    @property
    def disabled_at(self) -> int | None: ...


class UserRepo(Protocol):
    def create(self, email: str, password_hash: str, role: str) -> UserRecord:
        """Insert a user; raises the repo's duplicate error if the email exists."""
        ...

    def get(self, user_id: str) -> UserRecord | None: ...

    def by_email(self, email: str) -> UserRecord | None: ...

    def token_version(self, user_id: str) -> int | None:
        """The user's current token version; None when the user is gone or disabled."""
        ...


@runtime_checkable
class PasswordHashUpdater(Protocol):
    """Optional on a :class:`UserRepo`: without it, outdated hashes are never upgraded."""

    def set_password_hash(self, user_id: str, password_hash: str) -> None: ...


class RefreshTokenRecord(Protocol):
    @property
    def user_id(self) -> str: ...
    @property
    def family_id(self) -> str: ...
    @property
    def expires_at(self) -> int: ...
    @property
    def used_at(self) -> int | None: ...
    @property
    def revoked_at(self) -> int | None: ...


class RefreshTokenRepo(Protocol):
    """Refresh tokens by SHA-256 hex digest; times are integer epoch milliseconds."""

    def add(
        self, token_hash: str, user_id: str, family_id: str, expires_at: int, *, created_at: int
    ) -> object: ...

    def get(self, token_hash: str) -> RefreshTokenRecord | None: ...

    def mark_used(self, token_hash: str, at: int) -> bool:
        """Set ``used_at`` if it is still unset; False if another call did it first."""
        ...

    def revoke_family(self, family_id: str, at: int) -> object: ...


def normalize_email(email: str) -> str:
    """Lower-cased and stripped, or :class:`InvalidEmail`: a sanity check, not RFC 5322."""
    normalized = email.strip().lower()
    if len(normalized) > 254 or not _EMAIL_RE.fullmatch(normalized):
        raise InvalidEmail(f"not a valid email address: {email!r}")
    return normalized


def check_password_policy(password: str) -> None:
    if not MIN_PASSWORD_CHARS <= len(password) <= MAX_PASSWORD_CHARS:
        raise WeakPassword(
            f"a password needs {MIN_PASSWORD_CHARS} to {MAX_PASSWORD_CHARS} characters"
        )


def check_access_claims(claims: dict[str, Any], now: float) -> Principal:
    """The principal of a decoded access token's ``claims`` at ``now`` (epoch s), or
    :class:`InvalidToken`."""
    exp, nbf = _int_claim(claims, "exp"), _int_claim(claims, "nbf", default=claims.get("iat"))
    _int_claim(claims, "iat")
    if exp <= now:
        raise InvalidToken("access token expired")
    if nbf > now:
        raise InvalidToken("access token not yet valid")
    sub, email, role = claims.get("sub"), claims.get("email"), claims.get("role")
    if not isinstance(sub, str) or not isinstance(email, str) or role not in ROLES:
        raise InvalidToken("invalid access token: bad sub, email or role claim")
    version = _int_claim(claims, "ver", default=0)  # tokens from before versions: 0
    return Principal(user_id=sub, email=email, role=role, token_version=version)


def _int_claim(claims: dict[str, Any], name: str, default: object = None) -> int:
    value = claims.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidToken(f"invalid access token: {name} must be an integer")
    return value
