"""Authentication behind one small interface, so a Firebase backend can replace the local one.

HTTP resources see only :class:`Authenticator`: they turn credentials into :class:`Tokens`
and an ``Authorization: Bearer`` header into a :class:`Principal`. :class:`LocalAuthenticator`
is the self-hosted backend:

- passwords are hashed with argon2id (``argon2-cffi``); a login on an unknown email still
  spends one verification on a dummy hash and fails with the same message, so neither the
  answer nor its timing tells whether an account exists;
- access tokens are short-lived HS256 JWTs, checked statelessly on reads; they carry the
  user's ``token_version`` (claim ``ver``), which write requests check against the user's
  row (:meth:`LocalAuthenticator.check_current`, one read by primary key): disabling or
  deleting a user bumps it, so the user's tokens stop writing at once (reads until they
  expire, at most ``access_ttl_s``);
- refresh tokens are random strings stored only as SHA-256 digests, rotated on every use.
  Each login starts a *family*; presenting a token that was already used (a stolen copy, or
  the victim after the thief) revokes the whole family, so both parties must log in again;
- a token presented again within :data:`REFRESH_REUSE_GRACE_S` of its first use (two tabs
  of one browser, a page reloaded while its refresh was in flight) gets the *same* new pair
  as the first use instead: the successor is derived from the spent token by HMAC with the
  signing secret, so every gateway worker computes it from what storage holds (the spent
  token's ``used_at``), with no state in memory. See docs/auth.md.

Every method is safe to call from any gunicorn thread: the authenticator keeps no mutable
state, and the atomicity the rotation needs comes from ``RefreshTokenRepo.mark_used``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
import time
import uuid
from collections.abc import Callable
from typing import NoReturn, cast

import argon2
import jwt
from argon2.exceptions import InvalidHashError, VerificationError

from gateway.auth_model import (
    ROLES,
    SECRET_BYTES,
    Authenticator,
    PasswordHashUpdater,
    Principal,
    RefreshTokenRecord,
    RefreshTokenRepo,
    Role,
    Tokens,
    UserRecord,
    UserRepo,
    check_access_claims,
    check_password_policy,
    normalize_email,
)
from gateway.auth_secret import load_or_create_secret
from storage.errors import (
    EmailNotConfirmed,
    EmailTaken,
    InvalidCredentials,
    InvalidEmail,
    InvalidToken,
)

__all__ = [
    "REFRESH_REUSE_GRACE_S",
    "Authenticator",
    "LocalAuthenticator",
    "PasswordHashUpdater",
    "Principal",
    "RefreshTokenRecord",
    "RefreshTokenRepo",
    "Role",
    "Tokens",
    "UserRecord",
    "UserRepo",
    "check_password_policy",
    "default_password_hasher",
    "load_or_create_secret",
    "normalize_email",
]

log = logging.getLogger(__name__)

REFRESH_REUSE_GRACE_S = 30
"""How long after its first use a refresh token presented again still gets the same new pair
(instead of revoking its family): long enough for tabs and reloads racing each other, short
enough that a copy stolen later is still caught."""

# -- the local backend -------------------------------------------------------------------


def default_password_hasher() -> argon2.PasswordHasher:
    """argon2id with OWASP's minimum (19 MiB, 2 passes, 1 lane): ~20 ms per hash."""
    return argon2.PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1)


class LocalAuthenticator:
    """:class:`Authenticator` on our own user table, argon2id hashes and HS256 JWTs."""

    def __init__(
        self,
        users: UserRepo,
        refresh_tokens: RefreshTokenRepo,
        *,
        secret: bytes,
        duplicate_error: type[Exception] | None = None,
        clock: Callable[[], float] = time.time,
        access_ttl_s: int = 900,
        refresh_ttl_s: int = 30 * 86400,
        hasher: argon2.PasswordHasher | None = None,
        issuer: str = "smartcharge",
        audience: str = "smartcharge-api",
        refresh_reuse_grace_s: float = REFRESH_REUSE_GRACE_S,
    ) -> None:
        """``duplicate_error`` is what ``users.create`` raises for a taken email; when None,
        any exception whose class (or a base) is named ``DuplicateError`` counts.
        ``refresh_reuse_grace_s``: see :data:`REFRESH_REUSE_GRACE_S` (0 turns it off)."""
        if len(secret) < SECRET_BYTES:
            raise ValueError(f"the JWT secret needs at least {SECRET_BYTES} bytes")
        self._users = users
        self._refresh_tokens = refresh_tokens
        self._secret = secret
        self._duplicate_error = duplicate_error
        self._clock = clock
        self._access_ttl_s = access_ttl_s
        self._refresh_ttl_ms = refresh_ttl_s * 1000
        self._hasher = hasher if hasher is not None else default_password_hasher()
        self._issuer = issuer
        self._audience = audience
        self._grace_ms = int(refresh_reuse_grace_s * 1000)
        # Verified against when the email is unknown, to cost the same as a real check.
        self._dummy_hash = self._hasher.hash(secrets.token_urlsafe(16))

    # -- accounts

    def register(self, email: str, password: str) -> Tokens:
        user = self._create(email, password, "driver")
        return self._issue(user, family_id=_new_id())

    def create_user(self, email: str, password: str, role: Role) -> Principal:
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}; expected one of {sorted(ROLES)}")
        return _principal(self._create(email, password, role))

    def _create(self, email: str, password: str, role: Role) -> UserRecord:
        email = normalize_email(email)
        check_password_policy(password)
        if self._users.by_email(email) is not None:  # fast path; create() is the real check
            raise EmailTaken(f"an account already exists for {email}")
        try:
            return self._users.create(
                email=email, password_hash=self._hasher.hash(password), role=role
            )
        except Exception as exc:
            if self._is_duplicate(exc):
                raise EmailTaken(f"an account already exists for {email}") from None
            raise

    def _is_duplicate(self, exc: Exception) -> bool:
        if self._duplicate_error is not None:
            return isinstance(exc, self._duplicate_error)
        return any(cls.__name__ == "DuplicateError" for cls in type(exc).__mro__)

    def login(self, email: str, password: str) -> Tokens:
        try:  # not an address (a NUL byte, say) is an unknown account, never a query
            user = self._users.by_email(normalize_email(email))
        except InvalidEmail:
            user = None
        if user is None:
            self._verify_password(self._dummy_hash, password)
            raise InvalidCredentials()
        if not self._verify_password(user.password_hash, password):
            raise InvalidCredentials()
        if user.disabled_at is not None:  # the same answer as a wrong password
            raise InvalidCredentials()
        if getattr(user, "confirmed_at", 0) is None:  # signed up by mail, link not followed
            raise EmailNotConfirmed()
        if self._hasher.check_needs_rehash(user.password_hash):
            self._rehash(user, password)
        return self._issue(user, family_id=_new_id())

    def _rehash(self, user: UserRecord, password: str) -> None:
        if isinstance(self._users, PasswordHashUpdater):
            self._users.set_password_hash(user.id, self._hasher.hash(password))
            log.info("rehashed the password of user %s with the current parameters", user.id)
        else:
            log.warning("user %s has an outdated password hash the repo cannot update", user.id)

    def _verify_password(self, password_hash: str, password: str) -> bool:
        try:
            return self._hasher.verify(password_hash, password)
        except (VerificationError, InvalidHashError):
            return False

    # -- refresh tokens

    def refresh(self, refresh_token: str) -> Tokens:
        """Rotate: the presented token is spent, a new one joins the same family.

        A token that was already spent means two parties hold copies: the whole family is
        revoked (the legitimate client has to log in again, and so has the thief) -- unless
        it was spent less than the grace window ago: then the answer is the same new pair
        the first use got (its successor is derived from it, see :meth:`_successor`).
        """
        token_hash = _digest(refresh_token)
        record = self._refresh_tokens.get(token_hash)
        now_ms = self._now_ms()
        if record is None:
            raise InvalidToken("unknown refresh token")
        if record.revoked_at is not None:
            raise InvalidToken("refresh token revoked; log in again")
        if record.used_at is not None:
            return self._replay(refresh_token, record, now_ms)
        if record.expires_at <= now_ms:
            raise InvalidToken("refresh token expired; log in again")
        if not self._refresh_tokens.mark_used(token_hash, at=now_ms):
            # a concurrent refresh spent it first: its answer, if still in the window
            spent = self._refresh_tokens.get(token_hash)
            if spent is None or spent.used_at is None or spent.revoked_at is not None:
                self._revoke_reused(record, now_ms)
            return self._replay(refresh_token, spent, now_ms)
        user = self._user_of(record, now_ms)
        tokens = self._successor(refresh_token, user, record, used_at=now_ms)
        spent = self._refresh_tokens.get(token_hash)
        if spent is None or spent.revoked_at is not None:
            # A concurrent reuse revoked the family before the new token joined it: the new
            # one must not outlive it (a revocation after the join covers it already).
            self._revoke_reused(record, now_ms)
        return tokens

    def _replay(self, refresh_token: str, record: RefreshTokenRecord, now_ms: int) -> Tokens:
        """A spent token again: the same successor within the grace window, else revoke."""
        used_at = record.used_at
        if used_at is None or self._grace_ms <= 0 or now_ms - used_at > self._grace_ms:
            self._revoke_reused(record, now_ms)
        user = self._user_of(record, now_ms)
        tokens = self._successor(refresh_token, user, record, used_at=used_at)
        successor = self._refresh_tokens.get(_digest(tokens.refresh_token))
        if successor is None or successor.revoked_at is not None:
            raise InvalidToken("refresh token revoked; log in again")
        log.info("refresh token of user %s presented again within the grace window", user.id)
        return tokens

    def _user_of(self, record: RefreshTokenRecord, now_ms: int) -> UserRecord:
        user = self._users.get(record.user_id)
        if user is None or user.disabled_at is not None:
            self._refresh_tokens.revoke_family(record.family_id, at=now_ms)
            gone = "no longer exists" if user is None else "is disabled"
            raise InvalidToken(f"the account of this refresh token {gone}")
        return user

    def _successor(
        self, refresh_token: str, user: UserRecord, record: RefreshTokenRecord, *, used_at: int
    ) -> Tokens:
        """The pair that replaces ``refresh_token``, the same every time it is computed.

        Both tokens are functions of the spent token, the secret and the time of its first
        use: the refresh token is an HMAC of the spent one, the access token is issued at
        ``used_at`` with an HMAC-derived ``jti``. The successor's row is added once (a
        second add is a duplicate, which is fine: it is the same row).
        """
        new_refresh = _b64(self._mac(b"refresh-successor", refresh_token, 32))
        jti = _b64(self._mac(b"access-jti", refresh_token, 16))
        if self._refresh_tokens.get(_digest(new_refresh)) is None:
            try:
                self._refresh_tokens.add(
                    token_hash=_digest(new_refresh),
                    user_id=str(user.id),
                    family_id=record.family_id,
                    created_at=used_at,
                    expires_at=used_at + self._refresh_ttl_ms,
                )
            except Exception as exc:
                if not any(cls.__name__ == "DuplicateError" for cls in type(exc).__mro__):
                    raise
        return self._tokens(user, issued_at=used_at // 1000, jti=jti, refresh_token=new_refresh)

    def _mac(self, purpose: bytes, token: str, size: int) -> bytes:
        return hmac.new(self._secret, purpose + b"\0" + token.encode(), hashlib.sha256).digest()[
            :size
        ]

    def _revoke_reused(self, record: RefreshTokenRecord, now_ms: int) -> NoReturn:
        self._refresh_tokens.revoke_family(record.family_id, at=now_ms)
        log.warning("refresh token reused for user %s: family revoked", record.user_id)
        raise InvalidToken("refresh token already used; every session of it is revoked")

    def logout(self, refresh_token: str) -> None:
        """Revoke the token's family; idempotent for a token already revoked or spent."""
        record = self._refresh_tokens.get(_digest(refresh_token))
        if record is None:
            raise InvalidToken("unknown refresh token")
        self._refresh_tokens.revoke_family(record.family_id, at=self._now_ms())

    # -- access tokens

    def verify(self, access_token: str) -> Principal:
        """Check signature, issuer, audience and lifetime (against the injected clock)."""
        try:
            claims = jwt.decode(
                access_token,
                self._secret,
                algorithms=["HS256"],
                audience=self._audience,
                issuer=self._issuer,
                # Lifetimes are checked below against self._clock, not PyJWT's own clock.
                options={
                    "require": ["exp", "iat", "sub", "iss", "aud"],
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                },
            )
        except jwt.PyJWTError as exc:
            raise InvalidToken(f"invalid access token: {exc}") from None
        return check_access_claims(claims, self._clock())

    def check_current(self, principal: Principal) -> None:
        """The token's version is the user's current one (the user exists, is enabled, and
        nothing revoked its tokens since): one read by primary key."""
        version = self._users.token_version(principal.user_id)
        if version is None:
            raise InvalidToken("this account is disabled or deleted")
        if version != principal.token_version:
            raise InvalidToken("this token was revoked; log in again")

    def _issue(self, user: UserRecord, *, family_id: str) -> Tokens:
        now = self._clock()
        refresh_token = secrets.token_urlsafe(32)
        now_ms = int(now * 1000)
        self._refresh_tokens.add(
            token_hash=_digest(refresh_token),
            user_id=str(user.id),
            family_id=family_id,
            created_at=now_ms,
            expires_at=now_ms + self._refresh_ttl_ms,
        )
        return self._tokens(
            user, issued_at=int(now), jti=secrets.token_urlsafe(16), refresh_token=refresh_token
        )

    def _tokens(self, user: UserRecord, *, issued_at: int, jti: str, refresh_token: str) -> Tokens:
        claims = {
            "sub": str(user.id),
            "email": user.email,
            "role": str(user.role),
            "iat": issued_at,
            "nbf": issued_at,
            "exp": issued_at + self._access_ttl_s,
            "iss": self._issuer,
            "aud": self._audience,
            "jti": jti,
            "ver": user.token_version,
        }
        return Tokens(
            access_token=jwt.encode(claims, self._secret, algorithm="HS256"),
            refresh_token=refresh_token,
            expires_in=self._access_ttl_s,
        )

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)


def _principal(user: UserRecord) -> Principal:
    if user.role not in ROLES:
        raise ValueError(f"user {user.id} has an unknown role {user.role!r}")
    return Principal(user_id=str(user.id), email=user.email, role=cast(Role, str(user.role)))


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _new_id() -> str:
    return uuid.uuid4().hex
