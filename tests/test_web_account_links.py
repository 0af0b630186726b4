"""The driver app with mail: sign up, follow the confirmation link, forget the password,
follow the reset link, in a real Chromium against ``smartcharge csms --smtp-url`` (a real
SMTP sink, aiosmtpd)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import browser
from tests.account_support import SmtpSink, link_of
from tests.browser import ConsoleWatch, new_page
from tests.driver_client import csms_process, wait_until
from tests.faults.test_csms_kill import free_port
from tests.test_web_app import assert_accessible

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

chromium = browser.chromium
playwright_sync = browser.playwright_sync
PASSWORD, NEW_PASSWORD = "correct horse battery", "a brand new passphrase"


@pytest.fixture
def app_url(mosquitto_url: str, tmp_path: Path, sink: SmtpSink) -> Iterator[str]:
    http_port, https_port = free_port(), free_port()
    https = f"https://127.0.0.1:{https_port}"
    data_dir = tmp_path / "csms"
    with csms_process(
        mosquitto_url, data_dir, http_port, https_port, tmp_path / "csms.log",
        extra=("--smtp-url", sink.url, "--public-url", https, "--map-tiles", "none"),
    ):  # fmt: skip
        wait_until((data_dir / "tls" / "cert.pem").exists, "the certificate", 60)
        yield f"{https}/app"


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    with SmtpSink() as s:
        yield s


def test_a_driver_confirms_by_mail_then_resets_a_forgotten_password(
    app_url: str, sink: SmtpSink, chromium: Any
) -> None:
    from playwright.sync_api import expect

    page = new_page(chromium, size="phone")
    watch = ConsoleWatch.attach(page)
    watch.allow(r"403")  # the sign-in refused before the address is confirmed
    page.goto(app_url)
    page.get_by_test_id("email").fill("mia@example.com")
    page.get_by_test_id("password").fill(PASSWORD)
    page.get_by_test_id("register").click()
    expect(page.get_by_test_id("auth-info")).to_contain_text("Check your mailbox")
    page.get_by_test_id("password").fill(PASSWORD)
    page.get_by_test_id("login").click()  # not confirmed yet
    expect(page.locator("#auth-error")).to_contain_text(re.compile("confirm", re.I))

    purpose, token = link_of(sink.next())
    assert purpose == "confirm"
    page.goto(f"{app_url}#confirm={token}")
    expect(page.get_by_test_id("auth-info")).to_contain_text("confirmed")
    assert "#" not in page.url  # the token leaves the address bar at once
    page.get_by_test_id("email").fill("mia@example.com")
    page.get_by_test_id("password").fill(PASSWORD)
    page.get_by_test_id("login").click()
    expect(page.locator("#shell")).to_be_visible()
    page.locator("#sign-out").click()

    page.get_by_test_id("email").fill("mia@example.com")
    page.get_by_test_id("forgot").click()
    expect(page.get_by_test_id("auth-info")).to_contain_text("on its way")
    purpose, token = link_of(sink.next())
    assert purpose == "reset"
    page.goto(f"{app_url}#reset={token}")
    expect(page.locator("#auth-title")).to_have_text("Choose a new password")
    assert_accessible(page)
    page.get_by_test_id("password").fill(NEW_PASSWORD)
    page.get_by_test_id("login").click()
    expect(page.locator("#shell")).to_be_visible()  # signed in with the new password
    watch.assert_clean()
