"""Tabs that agree (issue 13, point 5; docs/auth.md): two tabs of one browser share one login.
They survive a CSMS restart and a simultaneous reload still signed in (one refresh at a
time under a Web Lock, new tokens shared on a BroadcastChannel, the server's grace window
behind both), and signing out in one tab signs out the other. Real Chromium against
``smartcharge csms --demo-users``, restarted by the test."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests import browser
from tests.browser import ConsoleWatch, new_page
from tests.driver_client import csms_process, wait_until
from tests.faults.test_csms_kill import free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

chromium = browser.chromium
playwright_sync = browser.playwright_sync


@dataclass
class Csms:
    """``smartcharge csms --demo-users`` that the test can restart on the same ports."""

    mqtt_url: str
    root: Path
    ports: tuple[int, int]
    stack: contextlib.ExitStack
    logins: dict[str, dict[str, str]]

    @property
    def data_dir(self) -> Path:
        return self.root / "csms"

    @property
    def app_url(self) -> str:
        return f"https://127.0.0.1:{self.ports[1]}/app"

    def start(self) -> None:
        self.stack.enter_context(
            csms_process(
                self.mqtt_url,
                self.data_dir,
                *self.ports,
                self.root / "csms.log",
                # no tile server is reachable from the tests: the map shows the stations only
                extra=("--demo-users", "--map-tiles", "none"),
            )
        )
        wait_until((self.data_dir / "tls" / "cert.pem").exists, "the certificate", 60)

    def restart(self) -> None:
        self.stack.close()  # SIGTERM, waited for
        self.stack = contextlib.ExitStack()
        self.start()


@pytest.fixture
def csms(mosquitto_url: str, tmp_path: Path) -> Iterator[Csms]:
    server = Csms(mosquitto_url, tmp_path, (free_port(), free_port()), contextlib.ExitStack(), {})
    try:
        server.start()
        path = server.data_dir / "demo-logins.json"
        server.logins = wait_until(
            lambda: json.loads(path.read_text()) if path.exists() else None, "demo-logins.json"
        )
        yield server
    finally:
        server.stack.close()


def two_tabs(chromium: Any) -> tuple[Any, Any]:
    """Two pages of one browser context: one profile, so one localStorage, one lock space."""
    first = new_page(chromium, size="phone")
    return first, first.context.new_page()


def sign_in(page: Any, login: dict[str, str]) -> None:
    page.get_by_test_id("email").fill(login["email"])
    page.get_by_test_id("password").fill(login["password"])
    page.get_by_test_id("login").click()
    page.locator(".tabbar").wait_for(state="visible")


def wait_live(page: Any, timeout: float = 60_000) -> None:
    page.wait_for_function(
        "() => document.querySelector('#live-state').dataset.state === 'open'", timeout=timeout
    )


def assert_signed_in(page: Any) -> None:
    from playwright.sync_api import expect

    expect(page.locator("#shell")).to_be_visible()
    expect(page.locator("#auth-screen")).to_be_hidden()


def test_two_tabs_survive_a_restart_and_a_simultaneous_reload_signed_in(
    csms: Csms, chromium: Any
) -> None:
    first, second = two_tabs(chromium)
    watches = [ConsoleWatch.attach(p) for p in (first, second)]
    for watch in watches:  # the server is down for a while: connections fail meanwhile
        watch.allow(r"net::ERR_")
    first.goto(csms.app_url)
    sign_in(first, csms.logins["driver"])
    second.goto(csms.app_url)  # resumes from the stored login
    for page in (first, second):
        wait_live(page)
        assert_signed_in(page)

    refreshes: list[str] = []
    for page in (first, second):
        page.on(
            "request",
            lambda request: (
                refreshes.append(request.url) if "/auth/refresh" in request.url else None
            ),
        )
    csms.restart()
    for page in (first, second):
        wait_live(page)
        assert_signed_in(page)
    # the streams reconnected with the access tokens they had: a restart is no auth failure
    assert refreshes == []

    # both at once: each reload trades the one stored refresh token for tokens
    first.evaluate("() => setTimeout(() => location.reload(), 0)")
    second.evaluate("() => setTimeout(() => location.reload(), 0)")
    for page in (first, second):
        page.wait_for_load_state("load")
    for page in (first, second):
        wait_live(page)
        assert_signed_in(page)

    # and the family is alive: a later refresh in each still works
    for page in (first, second):
        page.reload()
        wait_live(page)
        assert_signed_in(page)
    for watch in watches:
        watch.assert_clean()


def test_signing_out_in_one_tab_signs_out_the_other(csms: Csms, chromium: Any) -> None:
    from playwright.sync_api import expect

    first, second = two_tabs(chromium)
    watches = [ConsoleWatch.attach(p) for p in (first, second)]
    first.goto(csms.app_url)
    sign_in(first, csms.logins["driver"])
    second.goto(csms.app_url)
    wait_live(second)
    assert_signed_in(second)

    first.locator("#sign-out").click()
    expect(first.get_by_test_id("email")).to_be_visible()
    expect(second.get_by_test_id("email")).to_be_visible()
    expect(second.locator("#auth-error")).to_contain_text("signed out in another tab")
    expect(second.locator("#shell")).to_be_hidden()
    assert second.evaluate("() => localStorage.getItem('smartcharge.driver.refresh')") is None

    # a reload stays signed out: nothing to resume
    second.reload()
    expect(second.get_by_test_id("email")).to_be_visible()
    expect(second.locator("#shell")).to_be_hidden()
    for watch in watches:
        watch.assert_clean()


def test_a_reload_that_lost_its_refresh_answer_is_still_signed_in(
    csms: Csms, chromium: Any
) -> None:
    """The server spent the stored refresh token but the page never got the answer (it
    reloaded, or the connection dropped): the same token again, within the grace window,
    gets the same new pair instead of revoking the login."""
    from playwright.sync_api import expect

    page = new_page(chromium, size="phone")
    watch = ConsoleWatch.attach(page)
    watch.allow(r"net::ERR_")  # the answer dropped on purpose
    page.goto(csms.app_url)
    sign_in(page, csms.logins["driver"])
    wait_live(page)
    stored = page.evaluate("() => localStorage.getItem('smartcharge.driver.refresh')")

    spent: list[int] = []

    def lose_the_answer(route: Any) -> None:
        spent.append(route.fetch().status)  # the server rotates the token...
        route.abort("connectionreset")  # ...and the page never hears of it

    page.route("**/api/v1/auth/refresh", lose_the_answer)
    page.reload()
    expect(page.get_by_test_id("offline-login")).to_be_visible()  # unreachable, login kept
    assert spent == [200]
    assert page.evaluate("() => localStorage.getItem('smartcharge.driver.refresh')") == stored

    page.unroute("**/api/v1/auth/refresh")
    page.reload()  # the spent token again
    wait_live(page)
    assert_signed_in(page)
    assert page.evaluate("() => localStorage.getItem('smartcharge.driver.refresh')") != stored
    watch.assert_clean()
