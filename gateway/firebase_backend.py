"""Wiring of the Firebase backends chosen by ``--auth firebase`` / ``--user-data firebase``.

- :class:`MirroredFirebaseAuth`: Firebase Authentication, plus a row per Firebase user in the SQL
  ``users`` table (id = the Firebase uid, a password hash that never verifies), because
  reservations (and SQL sessions and notifications) reference ``users.id``. The row is written
  the first time a user is seen (``create_user`` or ``verify``).
- :class:`FirebaseUserData`: the SQL :class:`storage.Storage` with ``sessions`` and
  ``notifications`` on the Realtime Database; every other store stays in SQL.

Configuration: ``--firebase-project`` (or ``GOOGLE_CLOUD_PROJECT``), credentials from
``GOOGLE_APPLICATION_CREDENTIALS`` (a service-account file) or Application Default Credentials,
``--firebase-api-key`` (the web API key, for password sign-in) and ``--firebase-database-url``
for the Realtime Database. See docs/firebase.md.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import TYPE_CHECKING, Any

from gateway.auth import Principal, Role, Tokens
from gateway.firebase_auth import FirebaseAuthenticator, firebase_app
from storage import DuplicateError, Storage
from storage.firebase_rtdb import RtdbNotificationStore, RtdbSessionStore, rtdb_root

if TYPE_CHECKING:
    from gateway.server import GatewaySettings

__all__ = [
    "FIREBASE_PASSWORD_HASH",
    "FirebaseUserData",
    "MirroredFirebaseAuth",
    "firebase_backends",
    "open_firebase",
]

log = logging.getLogger(__name__)

FIREBASE_PASSWORD_HASH = "!firebase"
"""The password hash of a mirrored user: not an argon2 hash, so no local login can match it."""


def open_firebase(
    project_id: str | None, *, database_url: str | None = None, name: str | None = None
) -> Any:
    """The firebase-admin App (refuses emulator variables outside test mode)."""
    project = project_id or os.environ.get("GOOGLE_CLOUD_PROJECT")
    if not project:
        raise SystemExit("the Firebase backend needs --firebase-project (or GOOGLE_CLOUD_PROJECT)")
    return firebase_app(project, database_url=database_url, name=name)


class MirroredFirebaseAuth:
    """A :class:`FirebaseAuthenticator` that keeps a SQL ``users`` row per Firebase user."""

    def __init__(self, firebase: FirebaseAuthenticator, storage: Storage) -> None:
        self._firebase = firebase
        self._users = storage.users
        self._known: set[str] = set()
        self._lock = threading.Lock()

    def register(self, email: str, password: str) -> Tokens:
        return self._firebase.register(email, password)

    def login(self, email: str, password: str) -> Tokens:
        return self._firebase.login(email, password)

    def refresh(self, refresh_token: str) -> Tokens:
        return self._firebase.refresh(refresh_token)

    def logout(self, refresh_token: str) -> None:
        self._firebase.logout(refresh_token)

    def verify(self, access_token: str) -> Principal:
        return self._mirror(self._firebase.verify(access_token))

    def check_current(self, principal: Principal) -> None:
        self._firebase.check_current(principal)

    def create_user(self, email: str, password: str, role: Role) -> Principal:
        return self._mirror(self._firebase.create_user(email, password, role))

    @property
    def app(self) -> Any:
        return self._firebase.app

    def close(self) -> None:
        self._firebase.close()

    def _mirror(self, principal: Principal) -> Principal:
        with self._lock:
            if principal.user_id in self._known:
                return principal
        if self._users.get(principal.user_id) is None:
            try:
                self._users.create(
                    principal.email,
                    FIREBASE_PASSWORD_HASH,
                    principal.role,
                    user_id=principal.user_id,
                )
            except DuplicateError:
                if self._users.get(principal.user_id) is None:  # not a race: the email is taken
                    log.warning(
                        "cannot mirror Firebase user %s: a local account has the email %s;"
                        " their reservations will be refused",
                        principal.user_id,
                        principal.email,
                    )
                    return principal
        with self._lock:
            self._known.add(principal.user_id)
        return principal


class FirebaseUserData:
    """The SQL storage, with ``sessions`` and ``notifications`` on the Realtime Database."""

    def __init__(self, storage: Storage, app: Any) -> None:
        self._storage = storage
        root = rtdb_root(app)
        self.sessions = RtdbSessionStore(root)
        self.notifications = RtdbNotificationStore(root)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._storage, name)  # users, reservations, ...: still SQL

    def close(self) -> None:
        self._storage.close()


def firebase_backends(
    settings: GatewaySettings, storage: Storage
) -> tuple[MirroredFirebaseAuth | None, Storage | FirebaseUserData]:
    """``(the Firebase authenticator or None for local, the user-data storage)`` as the
    settings choose; opens one firebase-admin App when either backend is Firebase."""
    if settings.auth_backend not in ("local", "firebase"):
        raise ValueError(f"unknown auth backend {settings.auth_backend!r}")
    if settings.user_data not in ("sqlite", "firebase"):
        raise ValueError(f"unknown user-data backend {settings.user_data!r}")
    if "firebase" not in (settings.auth_backend, settings.user_data):
        return None, storage
    if settings.user_data == "firebase" and not settings.firebase_database_url:
        raise SystemExit("--user-data firebase needs --firebase-database-url")
    app = open_firebase(settings.firebase_project, database_url=settings.firebase_database_url)
    auth = None
    if settings.auth_backend == "firebase":
        api_key = settings.firebase_api_key or os.environ.get("FIREBASE_API_KEY", "")
        if not api_key:
            raise SystemExit("--auth firebase needs --firebase-api-key (or FIREBASE_API_KEY)")
        auth = MirroredFirebaseAuth(FirebaseAuthenticator(app, api_key=api_key), storage)
    user_data = FirebaseUserData(storage, app) if settings.user_data == "firebase" else storage
    log.info("backends: auth=%s, user data=%s", settings.auth_backend, settings.user_data)
    return auth, user_data
