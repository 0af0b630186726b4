"""The driver app at the edges (issue 13, points 4 and 6), in a real Chromium against the
whole stack (``web_stack``): every page at 320 px without horizontal overflow and without
serious or critical axe-core violations, signed out and in; focus and scroll on what just
changed; friendly words instead of OCPP codes; the station's name after a reload; Stop's
note and badge agreeing; and what the app says offline (a banner, a paused charging view, a
Stop that explains, the stored login when opened offline).

``SMARTCHARGE_APP_SCREENSHOTS=1`` also refreshes docs/screenshots/app-*.png (nearby,
reservation, charging, interrupted); normal runs write nothing there."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests import browser
from tests.browser import ConsoleWatch, WebStack, axe_violations, new_page, save_screenshot
from tests.support import REPO_ROOT
from tests.test_web_app import available_item, dismiss_toasts, sign_up

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

chromium = browser.chromium
playwright_sync = browser.playwright_sync
web_stack = browser.web_stack

NARROW: dict[str, Any] = {"viewport": {"width": 320, "height": 640}}
SCREENSHOTS = os.environ.get("SMARTCHARGE_APP_SCREENSHOTS") == "1"


def assert_fits(page: Any, where: str) -> None:
    """No horizontal overflow: the document is no wider than the 320 px viewport."""
    width = page.evaluate("() => document.documentElement.scrollWidth")
    wide = page.evaluate(
        """() => [...document.querySelectorAll('body *')]
            .filter(el => el.getBoundingClientRect().right > 320.5 && el.offsetParent !== null)
            .slice(0, 5).map(el => el.tagName + '#' + el.id + '.' + el.className)"""
    )
    assert width <= 320, f"{where}: {width} px wide at 320 px ({wide})"


def settle(page: Any) -> None:
    """Finite animations (a toast fading in) finished: axe measures colours as they stay."""
    page.evaluate(
        """() => Promise.all(document.getAnimations()
            .filter(a => a.effect && a.effect.getTiming().iterations !== Infinity)
            .map(a => a.finished.catch(() => null)))"""
    )


def assert_axe_clean(page: Any, where: str) -> None:
    settle(page)
    found = axe_violations(page)
    assert found == [], f"{where}: {found}"


def check(page: Any, where: str) -> None:
    assert_fits(page, where)
    assert_axe_clean(page, where)


def publish(page: Any, name: str) -> None:
    """Into docs/screenshots/ only when asked (SMARTCHARGE_APP_SCREENSHOTS=1)."""
    if SCREENSHOTS:
        shot = save_screenshot(page, name)
        shutil.copyfile(shot, REPO_ROOT / "docs" / "screenshots" / f"{name}.png")


def test_every_page_fits_320_px_and_passes_axe_signed_out_and_in(
    web_stack: WebStack, chromium: Any
) -> None:
    from playwright.sync_api import expect

    page = new_page(chromium, size="phone", viewport=NARROW["viewport"])
    watch = ConsoleWatch.attach(page)
    watch.allow(r"status of (400|503)")  # the made-up confirmation link below (no mail: 503)
    page.goto(web_stack.app_url)
    expect(page.get_by_test_id("email")).to_be_visible()
    check(page, "sign-in")
    page.get_by_test_id("register").click()  # empty: the sign-up form says what is missing
    expect(page.locator("#auth-error")).to_be_visible()
    check(page, "sign-up")

    page.goto(f"{web_stack.app_url}#reset={'r' * 32}")
    expect(page.locator("#auth-title")).to_have_text("Choose a new password")
    check(page, "password reset")
    page.goto(f"{web_stack.app_url}#confirm={'c' * 32}")
    expect(page.locator("#auth-error")).to_be_visible()
    check(page, "email confirmation")

    page.goto(web_stack.app_url)
    sign_up(page, "narrow@example.com")
    page.get_by_test_id("use-location").click()
    expect(page.get_by_test_id("evse-item").first).to_be_visible()
    check(page, "nearby")

    item = available_item(page)
    item.get_by_test_id("reserve").click()
    expect(page.get_by_test_id("countdown")).to_be_visible()
    check(page, "reservation")
    page.get_by_test_id("cancel-reservation").click()
    expect(page.get_by_test_id("reservation-status")).to_contain_text("cancelled")

    available_item(page).get_by_test_id("start").click()
    expect(page.get_by_test_id("charging")).to_be_visible()
    expect(page.get_by_test_id("elapsed")).to_have_text(re.compile(r"^\d+:\d\d"))
    check(page, "charging")

    page.locator(".tabbar [data-tab=history]").click()
    expect(page.get_by_test_id("history-item").first).to_be_visible(timeout=30_000)
    check(page, "history")
    page.locator(".tabbar [data-tab=alerts]").click()
    expect(page.get_by_test_id("notification-item").first).to_be_visible()
    check(page, "notifications")
    watch.assert_clean()


def test_focus_and_scroll_follow_what_changed_and_words_are_friendly(
    web_stack: WebStack, chromium: Any
) -> None:
    from playwright.sync_api import expect

    page = new_page(chromium, size="phone")
    watch = ConsoleWatch.attach(page)
    page.goto(web_stack.app_url)
    sign_up(page, "focus@example.com")
    page.get_by_test_id("use-location").click()
    items = page.locator('[data-testid="evse-item"][data-status="Available"]')
    expect(items.nth(3)).to_be_visible()

    # reserving a charger low in the list: the card above comes into view with the focus
    items.last.get_by_test_id("reserve").click()
    card = page.locator("#reservation")
    expect(card).to_be_visible()
    expect(card).to_be_focused()
    expect(card).to_be_in_viewport()
    dismiss_toasts(page)
    publish(page, "app-reservation")
    page.get_by_test_id("cancel-reservation").click()
    expect(page.get_by_test_id("reservation-status")).to_contain_text("cancelled")
    page.locator("#reservation-dismiss").click()
    dismiss_toasts(page)
    publish(page, "app-nearby")

    # start: the charging view is shown, scrolled to and focused
    evse_id = available_item(page).get_attribute("data-evse-id")
    start_item = page.locator(f'[data-testid="evse-item"][data-evse-id="{evse_id}"]')
    station = start_item.locator(".evse-station").inner_text()
    start_item.get_by_test_id("start").click()
    view = page.get_by_test_id("charging")
    expect(view).to_be_visible()
    expect(page.locator("#charging-evse")).to_be_focused()
    expect(page.locator("#charging-evse")).to_contain_text(station)
    expect(page.get_by_test_id("soc")).to_have_text(re.compile(r"\d"), timeout=30_000)

    # after a reload the view still names the station, not only the EVSE id
    page.reload()
    expect(view).to_be_visible()
    expect(page.locator("#charging-evse")).to_contain_text(station)
    expect(page.get_by_test_id("elapsed")).not_to_have_text("0:00", timeout=10_000)  # it runs
    dismiss_toasts(page)
    page.evaluate("() => document.activeElement && document.activeElement.blur()")
    publish(page, "app-charging")

    # Stop: the note and the badge agree once it ended
    page.get_by_test_id("stop").click()
    expect(view).to_have_attribute("data-state", "finished", timeout=30_000)
    expect(page.locator("#charging-status")).to_have_text("Finished")
    expect(page.locator("#charging-note")).not_to_contain_text("Stopping")
    expect(page.locator("#charging-note")).to_contain_text("finished")

    # notifications in words: no OCPP code such as "(Remote)"
    page.locator(".tabbar [data-tab=alerts]").click()
    ended = page.locator('[data-testid="notification-item"][data-kind="session_ended"]')
    expect(ended.first).to_be_visible(timeout=30_000)
    expect(ended.first).to_contain_text("stopped from the app")
    for text in page.get_by_test_id("notification-item").all_inner_texts():
        assert not re.search(r"\((Remote|Local|EVDisconnected|SoCReached|Other)\)", text), text
    assert_axe_clean(page, "notifications")
    watch.assert_clean()


def test_offline_the_app_says_what_to_do_and_keeps_the_stored_login(
    web_stack: WebStack, chromium: Any
) -> None:
    """Offline is the browser's offline mode; "opened offline" is the page loaded while the
    API cannot be reached (its requests aborted). On a phone the service worker serves the
    page from its cache; here its own fetches cannot pass the stack's self-signed
    certificate, so it never installs, and the page comes from the network instead."""
    from playwright.sync_api import expect

    page = new_page(chromium, size="phone")
    watch = ConsoleWatch.attach(page)
    watch.allow(r"net::ERR_")  # offline on purpose: requests fail
    page.goto(web_stack.app_url)
    sign_up(page, "offline@example.com")
    page.get_by_test_id("use-location").click()
    available_item(page).get_by_test_id("start").click()
    expect(page.get_by_test_id("soc")).to_have_text(re.compile(r"\d"), timeout=30_000)
    expect(page.locator("#charging-note")).to_contain_text("Figures update live")
    expect(page.locator("#live-state")).to_have_attribute("data-state", "open")

    page.context.set_offline(True)
    banner = page.get_by_test_id("connection-banner")
    expect(banner).to_contain_text("You are offline")
    expect(banner).to_contain_text("use the charger")
    note = page.locator("#charging-note")
    expect(note).not_to_contain_text("Figures update live")
    expect(note).to_contain_text("use the charger")
    elapsed = page.get_by_test_id("elapsed").inner_text()
    page.wait_for_timeout(2500)  # the timer would have moved twice by now
    assert page.get_by_test_id("elapsed").inner_text() == elapsed
    assert_axe_clean(page, "charging offline")

    page.get_by_test_id("stop").click()
    expect(page.get_by_test_id("toast").filter(has_text="use the charger").first).to_be_visible()
    expect(page.get_by_test_id("stop")).to_be_visible()  # nothing was stopped

    # back online: live again, the banner goes, the timer runs
    page.context.set_offline(False)
    expect(page.locator("#live-state")).to_have_attribute("data-state", "open", timeout=30_000)
    expect(banner).not_to_contain_text("offline")
    expect(page.get_by_test_id("elapsed")).not_to_have_text(elapsed)

    # opened with the server out of reach: the stored login, in words, not a bare form
    page.route(re.compile(r"/api/"), lambda route: route.abort("internetdisconnected"))
    page.reload()
    offline = page.get_by_test_id("offline-login")
    expect(offline).to_be_visible()
    expect(page.get_by_test_id("offline-account")).to_have_text("offline@example.com")
    expect(page.get_by_test_id("login")).to_be_hidden()
    assert_axe_clean(page, "opened offline")

    page.locator("#offline-retry").click()  # still out of reach: it says so
    expect(page.locator("#offline-status")).to_contain_text("Still no connection")

    # reachable again: "Try again" resumes the session where it was
    page.unroute(re.compile(r"/api/"))
    page.locator("#offline-retry").click()
    expect(page.locator("#shell")).to_be_visible(timeout=30_000)
    expect(page.get_by_test_id("charging")).to_be_visible()
    page.get_by_test_id("stop").click()
    expect(page.get_by_test_id("charging")).to_have_attribute(
        "data-state", "finished", timeout=30_000
    )
    watch.assert_clean()


@pytest.mark.screenshots
def test_the_interrupted_reservation_screenshot(web_stack: WebStack, chromium: Any) -> None:
    from playwright.sync_api import expect

    page = new_page(chromium, size="phone")
    page.goto(web_stack.app_url)
    sign_up(page, "shots@example.com")
    item = available_item(page)
    evse_id = item.get_attribute("data-evse-id")
    item.get_by_test_id("reserve").click()
    expect(page.get_by_test_id("countdown")).to_be_visible()
    page.wait_for_function("() => document.querySelector('#live-state').dataset.state === 'open'")
    status, tokens = web_stack.api.post("/api/v1/auth/login", web_stack.operator)
    assert status == 200, tokens
    status, body = web_stack.api.call(
        "PUT", f"/api/v1/evses/{evse_id}/maintenance", {"enabled": True},
        token=tokens["access_token"],
    )  # fmt: skip
    assert status == 200, body
    expect(page.locator("#reservation")).to_have_attribute("data-state", "interrupted")
    dismiss_toasts(page)
    publish(page, "app-interrupted")
    assert Path(REPO_ROOT / "docs" / "screenshots" / "app-interrupted.png").exists()
