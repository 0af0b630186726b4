"""Shared by the account and security tests (tests/test_auth_lockout.py, test_auth_mail.py,
test_security_headers.py, test_security_files.py):

- :func:`gateway_app`: the Falcon app with local accounts on real storage (SQLite in
  ``tmp_path``, or PostgreSQL with ``SMARTCHARGE_DB_URL``), a CSMS that is never started, and
  optionally mail; requests through ``falcon.testing`` (``remote_addr`` is the peer address).
- :class:`SmtpSink`: a real SMTP server (aiosmtpd) on a free port; mails land on a queue.
- :func:`real_csms`: ``smartcharge csms --demo-users`` under gunicorn (HTTP + HTTPS).
"""

from __future__ import annotations

import contextlib
import email
import email.policy
import json
import queue
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import falcon.testing
from aiosmtpd.controller import Controller

from actors.system import CsmsConfig, CsmsSystem
from gateway.account_mail import AccountMail
from gateway.app import create_app
from gateway.auth import LocalAuthenticator
from gateway.broker_probe import free_port
from gateway.mail import SmtpMailer, parse_smtp_url
from storage import DuplicateError, Storage
from tests.auth_support import FakeClock, cheap_hasher
from tests.db import database_for_test, open_test_storage
from tests.driver_client import Api, csms_process, wait_until

HTTPS_BASE = "https://127.0.0.1:8443"
PASSWORD = "correct horse battery"
LINK = re.compile(r"https://\S+/app#(confirm|reset)=(\S+)")


class SmtpSink:
    """An SMTP server on 127.0.0.1 that keeps every message it receives, in order."""

    def __init__(self) -> None:
        self.messages: queue.Queue[EmailMessage] = queue.Queue()
        self.port = free_port()
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        self.messages.put(parsed)
        return "250 OK"

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}?from=noreply@example.org"

    def next(self, timeout: float = 10.0) -> EmailMessage:
        try:
            return self.messages.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no mail within {timeout} s") from None

    def __enter__(self) -> SmtpSink:
        self._controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._controller.stop()


def link_of(message: EmailMessage) -> tuple[str, str]:
    """(purpose, token) of the link in a mail."""
    body = message.get_body(("plain",))
    assert body is not None
    found = LINK.search(body.get_content())
    assert found, body.get_content()
    return found.group(1), found.group(2)


@dataclass
class Gateway:
    client: falcon.testing.TestClient
    storage: Storage
    auth: LocalAuthenticator
    clock: FakeClock
    mailer: SmtpMailer | None

    def post(self, path: str, body: Any, address: str = "10.0.0.1") -> falcon.testing.Result:
        return self.client.simulate_post(
            f"/api/v1/auth/{path}", json=body, protocol="https", remote_addr=address
        )

    def login(self, email: str, password: str, address: str) -> falcon.testing.Result:
        return self.post("login", {"email": email, "password": password}, address)


@contextlib.contextmanager
def gateway_app(
    data_dir: Path, *, smtp_url: str | None = None, auth_clock: bool = False, **create_kw: Any
) -> Iterator[Gateway]:
    """``auth_clock``: the authenticator runs on the test's :class:`FakeClock` too."""
    with database_for_test(data_dir) as url:
        storage = open_test_storage(data_dir, url)
        clock = FakeClock()
        auth = LocalAuthenticator(
            storage.users,
            storage.refresh_tokens,
            secret=b"s" * 32,
            duplicate_error=DuplicateError,
            hasher=cheap_hasher(),
            clock=clock if auth_clock else time.time,
        )
        mailer = None if smtp_url is None else SmtpMailer(parse_smtp_url(smtp_url))
        mail = None
        if mailer is not None:
            mail = AccountMail(
                storage, mailer, public_url=HTTPS_BASE, hasher=cheap_hasher(), clock=clock
            )
        app = create_app(
            CsmsSystem(CsmsConfig()),
            auth=auth,
            storage=storage,
            https_base=HTTPS_BASE,
            mail=mail,
            **create_kw,
        )
        try:
            yield Gateway(falcon.testing.TestClient(app), storage, auth, clock, mailer)
        finally:
            if mailer is not None:
                mailer.close()
            storage.close()


@dataclass(frozen=True)
class RealCsms:
    api: Api
    data_dir: Path
    db_url: str | None
    logins: dict[str, dict[str, str]]


@contextlib.contextmanager
def real_csms(mqtt_url: str, root: Path) -> Iterator[RealCsms]:
    """``smartcharge csms --demo-users`` on free ports, ready (certificate, demo logins)."""
    data_dir = root / "csms"
    http_port, https_port = free_port(), free_port()
    with (
        database_for_test(root / "db") as db_url,
        csms_process(
            mqtt_url,
            data_dir,
            http_port,
            https_port,
            root / "csms.log",
            extra=("--demo-users",),
            db_url=db_url,
        ),
    ):
        cert = data_dir / "tls" / "cert.pem"
        wait_until(cert.exists, "the self-signed certificate")
        api = Api(http_port, https_port, cert)
        wait_until(lambda: api.get("/healthz", secure=False)[0] == 200, "/healthz")
        logins_path = data_dir / "demo-logins.json"
        logins = wait_until(
            lambda: json.loads(logins_path.read_text()) if logins_path.exists() else None,
            "demo-logins.json",
        )
        yield RealCsms(api=api, data_dir=data_dir, db_url=db_url, logins=logins)
