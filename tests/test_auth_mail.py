"""Mail for people (gateway/account_mail.py, gateway/mail.py) through a real SMTP server
(aiosmtpd on a free port): sign-up and reset answer alike for every address and the mail
says which case it is; links carry single-use, expiring tokens stored as digests;
unconfirmed accounts cannot log in; a silent SMTP server never holds a request."""

from __future__ import annotations

import hashlib
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from gateway.mail import parse_smtp_url
from tests.account_support import PASSWORD, Gateway, SmtpSink, gateway_app, link_of

pytestmark = [pytest.mark.needs_db, pytest.mark.timeout(60)]

ALICE = "alice@example.com"
NEW = "newcomer@example.com"
NEW_PASSWORD = "a brand new passphrase"


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    with SmtpSink() as s:
        yield s


@pytest.fixture
def gateway(tmp_path: Path, sink: SmtpSink) -> Iterator[Gateway]:
    with gateway_app(tmp_path / "csms", smtp_url=sink.url) as gw:
        gw.auth.create_user(ALICE, PASSWORD, "driver")
        yield gw


def sign_up(gateway: Gateway, email: str, password: str = PASSWORD) -> tuple[int, object]:
    result = gateway.post("register", {"email": email, "password": password})
    return result.status_code, result.json


def test_sign_up_answers_alike_for_a_new_and_a_taken_email_and_the_mail_says_which(
    gateway: Gateway, sink: SmtpSink
) -> None:
    new, taken = sign_up(gateway, NEW), sign_up(gateway, ALICE)
    assert new == taken
    assert new[0] == 202

    first, second = sink.next(), sink.next()
    assert (first["To"], second["To"]) == (NEW, ALICE)
    assert link_of(first)[0] == "confirm"
    assert "already have an account" in second.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert link_of(second)[0] == "reset"
    assert second["From"] == "noreply@example.org"


def test_an_unconfirmed_account_logs_in_only_after_its_link_which_works_once(
    gateway: Gateway, sink: SmtpSink
) -> None:
    sign_up(gateway, NEW)
    purpose, token = link_of(sink.next())
    assert purpose == "confirm"
    unconfirmed = gateway.login(NEW, PASSWORD, "10.0.0.1")
    assert unconfirmed.status_code == 403, unconfirmed.json
    assert "confirm" in unconfirmed.json["reason"]
    assert gateway.login(NEW, "wrong password!", "10.0.0.1").status_code == 401

    assert gateway.post("confirm", {"token": token}).status_code == 204
    assert gateway.post("confirm", {"token": token}).status_code == 400

    assert gateway.login(NEW, PASSWORD, "10.0.0.1").status_code == 200


def test_someone_squatting_an_address_loses_it_to_the_owners_reset(
    gateway: Gateway, sink: SmtpSink
) -> None:
    sign_up(gateway, NEW, "the squatter's password")
    sink.next()  # the confirmation goes to the owner, who ignores it
    assert gateway.post("reset", {"email": NEW}).status_code == 202
    purpose, token = link_of(sink.next())
    assert purpose == "reset"

    reset = gateway.post("reset/confirm", {"token": token, "password": NEW_PASSWORD})

    assert reset.status_code == 200, reset.json  # the link proved the mailbox: confirmed
    assert gateway.login(NEW, NEW_PASSWORD, "10.0.0.1").status_code == 200
    assert gateway.login(NEW, "the squatter's password", "10.0.0.2").status_code == 401


def test_reset_answers_alike_and_mails_only_an_existing_account(
    gateway: Gateway, sink: SmtpSink
) -> None:
    nobody = gateway.post("reset", {"email": "nobody@example.com"})
    somebody = gateway.post("reset", {"email": ALICE})
    assert (nobody.status_code, nobody.json) == (somebody.status_code, somebody.json)
    assert somebody.status_code == 202
    assert sink.next()["To"] == ALICE
    assert sink.messages.empty()


def test_a_reset_link_sets_the_password_once_and_ends_every_other_login(
    gateway: Gateway, sink: SmtpSink
) -> None:
    old = gateway.login(ALICE, PASSWORD, "10.0.0.1").json
    gateway.post("reset", {"email": ALICE})
    _, token = link_of(sink.next())

    reset = gateway.post("reset/confirm", {"token": token, "password": NEW_PASSWORD})

    assert reset.status_code == 200, reset.json
    assert reset.headers["Cache-Control"] == "no-store"
    assert gateway.auth.verify(reset.json["access_token"]).email == ALICE
    refreshed = gateway.post("refresh", {"refresh_token": old["refresh_token"]})
    assert refreshed.status_code == 401  # the old login ended with the reset
    assert gateway.login(ALICE, PASSWORD, "10.0.0.2").status_code == 401
    assert gateway.login(ALICE, NEW_PASSWORD, "10.0.0.2").status_code == 200
    again = gateway.post("reset/confirm", {"token": token, "password": "yet another one!"})
    assert again.status_code == 400


def test_a_reset_link_expires_after_an_hour(gateway: Gateway, sink: SmtpSink) -> None:
    gateway.post("reset", {"email": ALICE})
    _, token = link_of(sink.next())
    gateway.clock.advance(3601)
    late = gateway.post("reset/confirm", {"token": token, "password": NEW_PASSWORD})
    assert late.status_code == 400, late.json
    assert gateway.login(ALICE, PASSWORD, "10.0.0.1").status_code == 200


def test_only_digests_of_link_tokens_are_stored(gateway: Gateway, sink: SmtpSink) -> None:
    gateway.post("reset", {"email": ALICE})
    _, token = link_of(sink.next())
    with gateway.storage.engine.connect() as conn:
        stored = [row[0] for row in conn.execute(text("SELECT token_hash FROM account_tokens"))]
    assert stored == [hashlib.sha256(token.encode()).hexdigest()]


def test_a_silent_smtp_server_does_not_hold_the_request(tmp_path: Path) -> None:
    with socket.socket() as silent:  # accepts connections (backlog), never says a word
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"smtp://127.0.0.1:{silent.getsockname()[1]}"
        with gateway_app(tmp_path / "csms", smtp_url=url) as gw:
            started = time.monotonic()
            result = gw.post("register", {"email": NEW, "password": PASSWORD})
            elapsed = time.monotonic() - started
            assert gw.mailer is not None
            gw.mailer.close(timeout_s=0)
    assert result.status_code == 202
    assert elapsed < 2.0  # the mailer's connection waits up to 10 s, on its own thread


def test_without_mail_reset_and_confirm_are_unavailable(tmp_path: Path) -> None:
    with gateway_app(tmp_path / "csms") as gw:
        assert gw.post("reset", {"email": ALICE}).status_code == 503
        assert gw.post("confirm", {"token": "x"}).status_code == 503
        body = {"token": "x", "password": NEW_PASSWORD}
        assert gw.post("reset/confirm", body).status_code == 503


def test_smtp_urls_never_carry_a_password() -> None:
    settings = parse_smtp_url("smtps://mailer@mail.example.org?from=ops@example.org", env={})
    assert (settings.host, settings.port, settings.security) == ("mail.example.org", 465, "tls")
    assert settings.sender == "ops@example.org"
    with pytest.raises(ValueError, match="no password"):
        parse_smtp_url("smtp://mailer:hunter2@mail.example.org")
    with pytest.raises(ValueError, match="scheme"):
        parse_smtp_url("http://mail.example.org")
