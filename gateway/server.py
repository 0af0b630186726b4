"""Serve the gateway with gunicorn, the CSMS actors living in the (single) worker.

Threads do not survive a fork, so the actors start in ``post_worker_init`` (in the
worker, after the fork) and stop in ``worker_exit``; ``preload_app`` stays off.
One worker owns the CSMS's persistent MQTT session; its event loop and pool serve
requests, which only read the :class:`FleetView` or tell an EVSE actor a command and
wait on its reply future (``docs/architecture.md``, "The two paths, hop by hop").
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import os
import secrets
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import falcon
from gunicorn.app.base import BaseApplication

from actors.system import CsmsConfig, CsmsSystem
from gateway.account_mail import AccountMail
from gateway.app import create_app
from gateway.auth import (
    Authenticator,
    LocalAuthenticator,
    default_password_hasher,
    load_or_create_secret,
)
from gateway.firebase_auth import refuse_emulators_outside_tests
from gateway.firebase_backend import FirebaseUserData, firebase_backends
from gateway.lease import csms_keeper
from gateway.mail import SmtpMailer, parse_smtp_url
from gateway.map_tiles import MapTiles
from gateway.tls import ensure_self_signed_cert
from gateway.worker import ASGI_WORKER, gunicorn_options
from storage import (
    DuplicateError,
    Lease,
    LeaseKeeper,
    Storage,
    open_storage,
    private_dir,
    private_file,
)
from storage.errors import EmailTaken

__all__ = [
    "GatewayServer",
    "GatewaySettings",
    "Runtime",
    "WorkerApplication",
    "gunicorn_base_options",
    "open_accounts",
    "open_mail",
    "serve",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class GatewaySettings:
    """Where the gateway listens and keeps its files."""

    http_host: str = "127.0.0.1"
    http_port: int = 8080
    https_port: int | None = 8443
    certfile: Path | None = None
    keyfile: Path | None = None
    data_dir: Path = Path("var/csms")
    db_url: str | None = None
    demo_users: bool = False
    threads: int = 128
    """Threads per worker for blocking work (storage, commands); streams need none."""
    loglevel: str = "info"
    auth_backend: str = "local"
    """``"local"`` (argon2 + JWT in the SQL database) or ``"firebase"``."""
    user_data: str = "sqlite"
    """Sessions and notifications: ``"sqlite"`` (the SQL database) or ``"firebase"`` (RTDB)."""
    firebase_project: str | None = None
    firebase_api_key: str | None = None
    firebase_database_url: str | None = None
    lease: Lease | None = None
    """The CSMS's lease, taken before the server starts (``gateway.lease``): the worker
    renews it while the actors run and releases it when they stop."""
    smtp_url: str | None = None
    """Mail for sign-up confirmation and password reset (``gateway.mail``); None: no mail."""
    public_url: str | None = None
    """Where people reach the gateway, for mailed links (default: the HTTPS URL)."""
    map_tiles: MapTiles = field(default_factory=MapTiles)
    """Where the pages' maps get their tiles (``gateway.map_tiles``; OpenStreetMap's)."""

    @property
    def https_base(self) -> str | None:
        if self.https_port is None:
            return None
        return f"https://{self.http_host}:{self.https_port}"

    @property
    def http_base(self) -> str | None:
        """The plain-HTTP URL, or None on a wildcard host (then each request names its own)."""
        if self.http_host in ("", "0.0.0.0", "::"):
            return None
        return f"http://{self.http_host}:{self.http_port}"


@dataclass
class Runtime:
    """What one worker runs: storage, the CSMS actors, the authenticator."""

    storage: Storage | FirebaseUserData
    system: CsmsSystem
    auth: Authenticator
    lease_keeper: LeaseKeeper | None = None
    mailer: SmtpMailer | None = None
    mail: AccountMail | None = None

    @classmethod
    def build(cls, config: CsmsConfig, settings: GatewaySettings) -> Runtime:
        sql, storage, auth = open_accounts(settings)
        system = CsmsSystem(replace(config, storage=storage))
        if settings.demo_users:
            ensure_demo_users(auth, storage, settings.data_dir)
        keeper = None if settings.lease is None else csms_keeper(sql.leases, settings.lease)
        mailer, mail = open_mail(settings, storage, auth)
        runtime = cls(storage=storage, system=system, auth=auth, lease_keeper=keeper)
        runtime.mailer, runtime.mail = mailer, mail
        return runtime

    def start(self) -> None:
        """Renew the lease once (a CSMS that lost it must not connect), then run."""
        if self.lease_keeper is not None:
            if not self.lease_keeper.renew_once():
                return
            self.lease_keeper.start()
        self.system.start(wait_connected_s=10.0)

    def app(self, settings: GatewaySettings) -> falcon.App:
        return create_app(
            self.system,
            mqtt_connected=self.system.mqtt_connected,
            auth=self.auth,
            storage=self.storage,
            https_base=settings.https_base,
            http_base=settings.http_base,
            mail=self.mail,
            csms_data_dir=settings.data_dir.resolve(),
            asgi=True,
            threads=settings.threads,
            map_tiles=settings.map_tiles,
        )

    def close(self) -> None:
        self.system.stop()
        if self.mailer is not None:
            self.mailer.close()
        if self.lease_keeper is not None:  # after the actors: a successor starts at once
            self.lease_keeper.stop(release=True)
        self.storage.close()


def open_accounts(
    settings: GatewaySettings,
) -> tuple[Storage, Storage | FirebaseUserData, Authenticator]:
    """The SQL storage, the user-data storage and the authenticator the settings choose (a
    node's and a gateway's alike: a gateway reads storage for accounts and history)."""
    refuse_emulators_outside_tests()  # the Auth emulator accepts unsigned tokens
    private_dir(settings.data_dir)  # 0700: it holds the database, keys and secrets
    sql = open_storage(settings.db_url, data_dir=settings.data_dir)
    firebase_auth, storage = firebase_backends(settings, sql)
    auth: Authenticator = firebase_auth or LocalAuthenticator(
        storage.users,
        storage.refresh_tokens,
        secret=load_or_create_secret(private_file(settings.data_dir / "secret.key")),
        duplicate_error=DuplicateError,
    )
    return sql, storage, auth


def open_mail(
    settings: GatewaySettings, storage: Storage | FirebaseUserData, auth: Authenticator
) -> tuple[SmtpMailer | None, AccountMail | None]:
    """The mailer and the mailed account flows when ``smtp_url`` is set (a node's worker and
    a gateway worker alike), else ``(None, None)``."""
    if settings.smtp_url is None:
        return None, None
    if not isinstance(auth, LocalAuthenticator) or not isinstance(storage, Storage):
        raise ValueError("mail (--smtp-url) needs local accounts in the SQL database")
    mailer = SmtpMailer(parse_smtp_url(settings.smtp_url))
    public_url = settings.public_url or settings.https_base or settings.http_base
    mail = AccountMail(
        storage,
        mailer,
        public_url=public_url or "http://localhost",
        hasher=default_password_hasher(),
    )
    return mailer, mail


DEMO_LOGINS = "demo-logins.json"


def ensure_demo_users(
    auth: Authenticator, storage: Storage | FirebaseUserData, data_dir: Path
) -> None:
    """A demo driver and a demo operator with random passwords, kept in ``demo-logins.json``."""
    path = data_dir / DEMO_LOGINS
    try:
        logins = json.loads(path.read_text())
    except (OSError, ValueError):
        logins = {
            role: {"email": f"{role}@demo.smartcharge.local", "password": secrets.token_urlsafe(12)}
            for role in ("driver", "operator")
        }
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(logins, f, indent=2)
    private_file(path)  # passwords: 0600, even if an older version made it 0644
    for role, login in logins.items():
        if storage.users.by_email(login["email"]) is None:
            with contextlib.suppress(EmailTaken):  # kept by Firebase from an earlier run
                auth.create_user(login["email"], login["password"], role)


class WorkerApplication(BaseApplication):  # type: ignore[misc,unused-ignore]
    """A gunicorn application with our options whose workers build what they run after the
    fork (``load``), start it in ``_post_worker_init`` and stop it in ``_worker_exit``."""

    def __init__(self, options: dict[str, Any]) -> None:
        self._options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self._options.items():
            self.cfg.set(key, value)
        self.cfg.set("preload_app", False)
        if "control_socket_disable" in self.cfg.settings:
            # gunicorn >= 25.1 opens a control socket at one fixed path per user
            # (~/.gunicorn/gunicorn.ctl): two CSMS instances would unlink each other's.
            self.cfg.set("control_socket_disable", True)
        self.cfg.set("post_worker_init", self._post_worker_init)
        self.cfg.set("worker_exit", self._worker_exit)

    def _post_worker_init(self, worker: Any) -> None:
        raise NotImplementedError

    def _worker_exit(self, server: Any, worker: Any) -> None:
        raise NotImplementedError


class GatewayServer(WorkerApplication):
    """A gunicorn application whose worker runs one :class:`CsmsSystem`."""

    def __init__(
        self, options: dict[str, Any], config: CsmsConfig, settings: GatewaySettings
    ) -> None:
        self._config = config
        self._settings = settings
        self._runtime: Runtime | None = None
        super().__init__(options)

    def load(self) -> Any:
        """Runs in the worker after the fork: open storage, build the (unstarted) system."""
        self._runtime = Runtime.build(self._config, self._settings)
        return self._runtime.app(self._settings)

    def _post_worker_init(self, worker: Any) -> None:
        if self._runtime is not None:
            self._runtime.start()
            log.info("CSMS actors started in worker %s", worker.pid)
        # What start-up built (modules, actors, tables, caches) lives as long as the worker:
        # out of the collector's sight, a full collection no longer stops every thread for
        # tens of milliseconds to walk it (76 ms seen under load, once every few seconds).
        gc.freeze()

    def _worker_exit(self, server: Any, worker: Any) -> None:
        if self._runtime is not None:
            self._runtime.close()
            log.info("CSMS actors stopped in worker %s", worker.pid)


def serve(config: CsmsConfig, settings: GatewaySettings) -> None:
    """Run gunicorn in the foreground until SIGINT/SIGTERM: HTTP reads, HTTPS writes."""
    options = gunicorn_base_options(settings, workers=1, name="smartcharge-csms")
    GatewayServer(options, config, settings).run()


def gunicorn_base_options(settings: GatewaySettings, *, workers: int, name: str) -> dict[str, Any]:
    """gunicorn's settings: ``workers`` ASGI workers (``gateway.asgi_worker``: uvicorn, an event
    loop each), HTTP on ``http_port``, HTTPS on ``https_port``, idle connections closed after
    ``KEEPALIVE_S``."""
    options: dict[str, Any] = {
        "workers": workers,
        "keepalive": KEEPALIVE_S,
        "timeout": 60,
        "graceful_timeout": 10,
        "loglevel": settings.loglevel,
        "accesslog": None,
        "proc_name": name,
        # Trust no X-Forwarded-Proto: a local client must not make plain HTTP look like HTTPS.
        "forwarded_allow_ips": "",
    }
    plain = [f"{settings.http_host}:{settings.http_port}"]
    if settings.https_port is None:
        options.update(bind=plain)
    else:
        certfile, keyfile = settings.certfile, settings.keyfile
        if certfile is None or keyfile is None:
            certfile, keyfile = ensure_self_signed_cert(settings.data_dir)
        options.update(
            gunicorn_options(
                plain_binds=plain,
                tls_binds=[f"{settings.http_host}:{settings.https_port}"],
                certfile=str(certfile),
                keyfile=str(keyfile),
            )
        )
    options["worker_class"] = ASGI_WORKER
    return options


KEEPALIVE_S = 5
