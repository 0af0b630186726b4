"""Firebase Authentication behind the :class:`gateway.auth.Authenticator` interface.

- ``verify`` checks an ID token with firebase-admin (``check_revoked=True``) and reads the role
  from the custom claim ``role`` (``"driver"`` when absent; any other value is refused).
- ``create_user`` uses firebase-admin (``create_user`` + ``set_custom_user_claims``).
- ``register``, ``login`` and ``refresh``: firebase-admin cannot sign a user in with a password
  (that is the client SDK's job), so they call the Identity Toolkit REST API
  (``accounts:signUp``, ``accounts:signInWithPassword``) and the Secure Token API (``token``)
  with the project's web API key, or the Auth emulator when ``FIREBASE_AUTH_EMULATOR_HOST`` is set.
- ``logout`` revokes every refresh token of the user (``revoke_refresh_tokens``): Firebase has
  no per-session revocation. ID tokens issued before stop verifying too (``check_revoked``).

Differences from :class:`gateway.auth.LocalAuthenticator` the contract tests do not hide:
Firebase refresh tokens are not rotated (the old one keeps working until revoked), and a
revocation is effective with a one-second granularity.

**Emulators are for tests only**: with ``FIREBASE_AUTH_EMULATOR_HOST`` set, firebase-admin's
``verify_id_token`` accepts *unsigned* tokens, so anybody could forge any identity.
:func:`refuse_emulators_outside_tests` stops the application unless ``SMARTCHARGE_TEST_MODE=1``.

firebase-admin is an optional dependency (``pip install smartcharge[firebase]``): this module
imports it only when a :class:`FirebaseAuthenticator` or a Firebase app is created.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Mapping
from typing import Any, ClassVar, cast

from gateway.auth import ROLES, Principal, Role, Tokens, check_password_policy, normalize_email
from storage.errors import (
    AuthError,
    EmailTaken,
    FirebaseUnavailable,
    InvalidCredentials,
    InvalidEmail,
    InvalidToken,
    WeakPassword,
)

__all__ = [
    "EMULATOR_ENV_VARS",
    "TEST_MODE_ENV",
    "EmulatorOutsideTests",
    "FirebaseAuthenticator",
    "firebase_app",
    "refuse_emulators_outside_tests",
]

log = logging.getLogger(__name__)

AUTH_EMULATOR_ENV = "FIREBASE_AUTH_EMULATOR_HOST"
DATABASE_EMULATOR_ENV = "FIREBASE_DATABASE_EMULATOR_HOST"
EMULATOR_ENV_VARS = (AUTH_EMULATOR_ENV, DATABASE_EMULATOR_ENV)
TEST_MODE_ENV = "SMARTCHARGE_TEST_MODE"

IDENTITY_TOOLKIT = "https://identitytoolkit.googleapis.com/v1"
SECURE_TOKEN = "https://securetoken.googleapis.com/v1"


class EmulatorOutsideTests(RuntimeError):
    """A Firebase emulator variable is set while test mode is off."""


def _test_mode(env: Mapping[str, str]) -> bool:
    return env.get(TEST_MODE_ENV, "").strip().lower() in ("1", "true", "yes")


def refuse_emulators_outside_tests(environ: Mapping[str, str] | None = None) -> None:
    """Raise :class:`EmulatorOutsideTests` if an emulator variable is set outside test mode.

    With ``FIREBASE_AUTH_EMULATOR_HOST`` set, firebase-admin accepts unsigned ID tokens; with
    ``FIREBASE_DATABASE_EMULATOR_HOST`` set, data goes to a throwaway local database. Either
    one in production is a hole or data loss, so the CSMS refuses to start with them unless
    ``SMARTCHARGE_TEST_MODE=1``.
    """
    env = os.environ if environ is None else environ
    present = [name for name in EMULATOR_ENV_VARS if env.get(name, "").strip()]
    if not present:
        return
    if not _test_mode(env):
        raise EmulatorOutsideTests(
            f"{', '.join(present)} set: refusing to start, because with the Firebase Auth"
            " emulator ID tokens are accepted without a signature (anybody could log in as"
            f" anybody). Unset it, or set {TEST_MODE_ENV}=1 if this really is a test."
        )
    log.warning("Firebase emulator in use (%s): test mode only", ", ".join(present))


def firebase_app(
    project_id: str | None = None, *, database_url: str | None = None, name: str | None = None
) -> Any:
    """Initialise a firebase-admin App (credentials: ``GOOGLE_APPLICATION_CREDENTIALS`` or
    Application Default Credentials; an emulator needs none). Refuses emulators outside tests."""
    refuse_emulators_outside_tests()
    import firebase_admin

    options: dict[str, str] = {}
    if project_id:
        options["projectId"] = project_id
    if database_url:
        options["databaseURL"] = database_url
    return firebase_admin.initialize_app(
        options=options, name=name or f"smartcharge-{uuid.uuid4().hex[:8]}"
    )


# Identity Toolkit / Secure Token error codes (the start of ``error.message``).
_BAD_CREDENTIALS = frozenset(
    {"EMAIL_NOT_FOUND", "INVALID_PASSWORD", "INVALID_LOGIN_CREDENTIALS", "USER_DISABLED"}
)
_BAD_REFRESH = frozenset(
    {
        "TOKEN_EXPIRED",
        "USER_DISABLED",
        "USER_NOT_FOUND",
        "INVALID_REFRESH_TOKEN",
        "MISSING_REFRESH_TOKEN",
        "INVALID_ID_TOKEN",
    }
)


class FirebaseAuthenticator:
    """:class:`gateway.auth.Authenticator` on Firebase Authentication.

    ``app`` is a firebase-admin App (see :func:`firebase_app`); ``api_key`` the project's web
    API key (any string for the emulator). Thread-safe: firebase-admin and ``httpx.Client`` are.
    """

    default_role: ClassVar[Role] = "driver"

    def __init__(self, app: Any, *, api_key: str, timeout_s: float = 10.0) -> None:
        refuse_emulators_outside_tests()
        import httpx  # installed with firebase-admin (the optional "firebase" extra)
        from firebase_admin import auth

        if not api_key:
            raise ValueError("the Firebase backend needs a web API key (--firebase-api-key)")
        self._auth = auth
        self._app = app
        self._api_key = api_key
        emulator = os.environ.get(AUTH_EMULATOR_ENV, "").strip()
        if emulator:
            self._identity = f"http://{emulator}/identitytoolkit.googleapis.com/v1"
            self._secure_token = f"http://{emulator}/securetoken.googleapis.com/v1"
        else:
            self._identity, self._secure_token = IDENTITY_TOOLKIT, SECURE_TOKEN
        self._httpx = httpx
        self._http = httpx.Client(timeout=timeout_s)

    @property
    def app(self) -> Any:
        """The firebase-admin App (delete it with ``firebase_admin.delete_app`` when done)."""
        return self._app

    def close(self) -> None:
        self._http.close()

    # -- accounts

    def register(self, email: str, password: str) -> Tokens:
        email = normalize_email(email)
        check_password_policy(password)
        body = self._post(
            f"{self._identity}/accounts:signUp",
            json={"email": email, "password": password, "returnSecureToken": True},
        )
        return _tokens(body["idToken"], body["refreshToken"], body["expiresIn"])

    def login(self, email: str, password: str) -> Tokens:
        body = self._post(
            f"{self._identity}/accounts:signInWithPassword",
            json={"email": email.strip().lower(), "password": password, "returnSecureToken": True},
        )
        return _tokens(body["idToken"], body["refreshToken"], body["expiresIn"])

    def create_user(self, email: str, password: str, role: Role) -> Principal:
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}; expected one of {sorted(ROLES)}")
        email = normalize_email(email)
        check_password_policy(password)
        try:
            user = self._auth.create_user(email=email, password=password, app=self._app)
        except self._auth.EmailAlreadyExistsError:
            raise EmailTaken(f"an account already exists for {email}") from None
        except ValueError as exc:
            raise InvalidEmail(f"Firebase refused the account: {exc}") from None
        except self._firebase_error() as exc:
            raise FirebaseUnavailable(f"Firebase could not create the user: {exc}") from exc
        try:
            self._auth.set_custom_user_claims(user.uid, {"role": role}, app=self._app)
        except BaseException:
            self._auth.delete_user(user.uid, app=self._app)  # no account with a missing role
            raise
        return Principal(user_id=user.uid, email=email, role=role)

    # -- tokens

    def refresh(self, refresh_token: str) -> Tokens:
        """New ID token for a refresh token. Firebase does not rotate refresh tokens: the
        returned one is usually the same, and the old one works until ``logout``."""
        body = self._exchange(refresh_token)
        self._refuse_revoked_session(body["id_token"], body["user_id"])
        return _tokens(body["id_token"], body["refresh_token"], body["expires_in"])

    def _refuse_revoked_session(self, id_token: str, uid: str) -> None:
        """Refuse a refresh of a session signed in before the user's last revocation.

        Firebase's token endpoint does this itself in production; the Auth emulator does not,
        so it is checked here too (one ``get_user`` per refresh): the new ID token's
        ``auth_time`` (when the session signed in) against ``tokens_valid_after_timestamp``.
        """
        auth = self._auth
        try:
            claims = auth.verify_id_token(id_token, app=self._app)
            user = auth.get_user(uid, app=self._app)
        except auth.UserNotFoundError:
            raise InvalidToken("the account of this refresh token no longer exists") from None
        except (auth.InvalidIdTokenError, ValueError) as exc:
            raise FirebaseUnavailable(f"Firebase returned an unusable ID token: {exc}") from exc
        except self._firebase_error() as exc:
            raise FirebaseUnavailable(f"could not check the refresh token: {exc}") from exc
        auth_time = claims.get("auth_time")
        valid_after_ms = user.tokens_valid_after_timestamp or 0
        if not isinstance(auth_time, int) or auth_time * 1000 < valid_after_ms:
            raise InvalidToken("refresh token revoked; log in again")

    def logout(self, refresh_token: str) -> None:
        """Revoke all the user's refresh tokens (Firebase cannot revoke just one session)."""
        uid = self._exchange(refresh_token)["user_id"]
        try:
            self._auth.revoke_refresh_tokens(uid, app=self._app)
        except self._auth.UserNotFoundError:
            raise InvalidToken("the account of this refresh token no longer exists") from None
        except self._firebase_error() as exc:
            raise FirebaseUnavailable(f"Firebase could not revoke the tokens: {exc}") from exc

    def verify(self, access_token: str) -> Principal:
        auth = self._auth
        try:
            claims = auth.verify_id_token(access_token, app=self._app, check_revoked=True)
        except auth.RevokedIdTokenError:
            raise InvalidToken("access token revoked; log in again") from None
        except auth.ExpiredIdTokenError:
            raise InvalidToken("access token expired") from None
        except auth.UserDisabledError:
            raise InvalidToken("the account of this token is disabled") from None
        except auth.UserNotFoundError:
            raise InvalidToken("the account of this token no longer exists") from None
        except (auth.InvalidIdTokenError, ValueError) as exc:
            # The first clause only: some messages quote the whole token.
            reason = str(exc).split(":")[0].strip()[:120]
            raise InvalidToken(f"invalid access token: {reason}") from None
        except self._firebase_error() as exc:  # certificates unreachable, ...
            raise FirebaseUnavailable(f"could not verify the token: {exc}") from exc
        uid, email = claims.get("uid"), claims.get("email")
        role = claims.get("role", self.default_role)
        if not isinstance(uid, str) or not isinstance(email, str):
            raise InvalidToken("invalid access token: no uid or email")
        if role not in ROLES:
            raise InvalidToken(f"invalid access token: unknown role {role!r}")
        return Principal(user_id=uid, email=email, role=cast(Role, role))

    def check_current(self, principal: Principal) -> None:
        """Nothing more to check: :meth:`verify` already asked Firebase (``check_revoked``),
        which refuses the tokens of a disabled, deleted or revoked account."""

    # -- REST calls

    def _exchange(self, refresh_token: str) -> dict[str, Any]:
        if not refresh_token:
            raise InvalidToken("unknown refresh token")
        return self._post(
            f"{self._secure_token}/token",
            data={"grant_type": "refresh_token", "refresh_token": refresh_token},
        )

    def _post(
        self, url: str, *, json: dict[str, Any] | None = None, data: dict[str, str] | None = None
    ) -> dict[str, Any]:
        try:
            resp = self._http.post(url, params={"key": self._api_key}, json=json, data=data)
        except self._httpx.HTTPError as exc:
            raise FirebaseUnavailable(f"Firebase Auth unreachable: {exc}") from exc
        try:
            body = resp.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise FirebaseUnavailable(f"Firebase Auth answered HTTP {resp.status_code}")
        if resp.is_success:
            return cast(dict[str, Any], body)
        raise _rest_error(body, resp.status_code, secure_token=url.endswith("/token"))

    @staticmethod
    def _firebase_error() -> type[Exception]:
        from firebase_admin import exceptions

        return cast(type[Exception], exceptions.FirebaseError)


def _tokens(id_token: str, refresh_token: str, expires_in: str | int) -> Tokens:
    return Tokens(access_token=id_token, refresh_token=refresh_token, expires_in=int(expires_in))


def _rest_error(body: dict[str, Any], status: int, *, secure_token: bool) -> AuthError:
    """The project's error for an Identity Toolkit / Secure Token error answer."""
    error = body.get("error")
    message = str(error.get("message", "")) if isinstance(error, dict) else str(error or "")
    code = message.split(":")[0].split(" ")[0].strip()
    detail = message.partition(":")[2].strip()
    if secure_token and (code in _BAD_REFRESH or status in (400, 401, 403)):
        return InvalidToken(f"refresh token rejected by Firebase ({code or status})")
    if code in _BAD_CREDENTIALS:
        return InvalidCredentials()
    if code == "EMAIL_EXISTS":
        return EmailTaken("an account already exists for this email")
    if code == "WEAK_PASSWORD":
        return WeakPassword(detail or "Firebase refused the password as too weak")
    if code in ("INVALID_EMAIL", "MISSING_EMAIL"):
        return InvalidEmail("not a valid email address")
    if code == "MISSING_PASSWORD":
        return InvalidCredentials()
    if code == "TOO_MANY_ATTEMPTS_TRY_LATER":
        return AuthError("too many attempts: try again later")
    log.error("unexpected Firebase Auth error: HTTP %s %s", status, message)
    return FirebaseUnavailable(f"Firebase Auth error: {code or status}")
