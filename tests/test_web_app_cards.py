"""The driver app's "Charging cards" panel (History tab, ``gateway/static/app/cards.js``): a
driver lists, adds and removes the RFID cards they badge at OCPP chargers with
(``/api/v1/me/tags``, docs/ocpp.md "RFID cards"), in a real Chromium at 320 px against the
whole stack (``web_stack``), and reads each refusal in words: a bad format (with the hint,
before any request), a card taken by another account, the 10-card limit, too many
registrations in an hour (with when to retry) and being offline. Every state fits 320 px and
passes axe; the page logs no errors beyond the refusals the test provokes."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from tests import browser
from tests.browser import ConsoleWatch, WebStack, new_page, save_screenshot
from tests.test_web_app_edges import NARROW, check

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

chromium = browser.chromium
playwright_sync = browser.playwright_sync
web_stack = browser.web_stack

PASSWORD = "correct horse battery"


def sign_in(page: Any, web_stack: WebStack, email: str) -> None:
    page.goto(web_stack.app_url)
    page.get_by_test_id("email").fill(email)
    page.get_by_test_id("password").fill(PASSWORD)
    page.get_by_test_id("login").click()
    page.locator(".tabbar").wait_for(state="visible")


def open_cards(page: Any) -> Any:
    """The History tab, where the panel is; returns the panel."""
    page.locator(".tabbar [data-tab=history]").click()
    panel = page.get_by_test_id("cards")
    panel.wait_for(state="visible")
    return panel


def add_card(page: Any, id_tag: str) -> None:
    page.get_by_test_id("card-input").fill(id_tag)
    page.get_by_test_id("card-add").click()


def tags_of(web_stack: WebStack, token: str) -> list[str]:
    status, body = web_stack.api.get("/api/v1/me/tags", token=token)
    assert status == 200, body
    return [t["id_tag"] for t in body["tags"]]


def test_a_driver_adds_sees_and_removes_a_card_and_is_told_why_one_is_refused(
    web_stack: WebStack, chromium: Any
) -> None:
    from playwright.sync_api import expect

    holder = web_stack.api.register("holder@example.com")
    status, body = web_stack.api.post("/api/v1/me/tags", {"id_tag": "TAKEN-0001"}, token=holder)
    assert status == 201, body
    token = web_stack.api.register("cards@example.com")

    page = new_page(chromium, size="phone", viewport=NARROW["viewport"])
    watch = ConsoleWatch.attach(page)
    watch.allow(r"status of 409")  # the taken card, refused on purpose
    sign_in(page, web_stack, "cards@example.com")
    panel = open_cards(page)
    expect(panel.get_by_test_id("cards-count")).to_have_text("0 of 10")
    expect(panel.get_by_text("No cards yet.")).to_be_visible()
    check(page, "no cards")

    # a bad format: the hint's words, the field marked, and nothing sent
    error = page.get_by_test_id("card-error")
    add_card(page, "04 A2")
    expect(error).to_have_text(re.compile(r"1 to 20 letters, digits, _ : or -"))
    expect(page.get_by_test_id("card-input")).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_test_id("card-input")).to_be_focused()
    assert tags_of(web_stack, token) == []
    check(page, "bad format")

    add_card(page, "04A2B3C4D5")
    item = page.get_by_test_id("card-item")
    expect(item).to_have_count(1)
    expect(item.get_by_test_id("card-tag")).to_have_text("04A2B3C4D5")
    expect(error).to_be_hidden()
    expect(page.get_by_test_id("card-input")).to_have_value("")
    expect(page.get_by_test_id("card-input")).to_be_focused()
    expect(page.get_by_test_id("toast").filter(has_text="04A2B3C4D5 added")).to_be_visible()
    expect(panel.get_by_test_id("cards-count")).to_have_text("1 of 10")
    assert tags_of(web_stack, token) == ["04A2B3C4D5"]
    panel.scroll_into_view_if_needed()
    save_screenshot(page, "app-cards")

    # another account's card (in another case: the same card) is taken, and says no more
    add_card(page, "taken-0001")
    expect(error).to_have_text("This card is already registered to another account.")
    expect(item).to_have_count(1)
    check(page, "taken")

    # the card is the server's: still there after a reload
    page.reload()
    page.locator(".tabbar").wait_for(state="visible")
    open_cards(page)
    expect(item.get_by_test_id("card-tag")).to_have_text("04A2B3C4D5")

    # Remove asks first; Keep leaves it (focus back on its Remove), then Remove removes it
    item.get_by_test_id("card-remove").click()
    expect(page.get_by_test_id("card-keep")).to_be_focused()
    check(page, "confirming")
    save_screenshot(page, "app-cards-confirm")
    page.get_by_test_id("card-keep").click()
    expect(item.get_by_test_id("card-remove")).to_be_focused()
    assert tags_of(web_stack, token) == ["04A2B3C4D5"]
    item.get_by_test_id("card-remove").click()
    page.get_by_test_id("card-remove-confirm").click()
    expect(item).to_have_count(0)
    expect(page.get_by_test_id("card-input")).to_be_focused()
    expect(page.get_by_test_id("toast").filter(has_text="Card removed")).to_be_visible()
    expect(panel.get_by_text("No cards yet.")).to_be_visible()
    assert tags_of(web_stack, token) == []
    assert tags_of(web_stack, holder) == ["TAKEN-0001"]
    check(page, "removed")
    watch.assert_clean()


def test_the_limit_a_rate_limit_and_offline_each_say_what_to_do(
    web_stack: WebStack, chromium: Any
) -> None:
    from playwright.sync_api import expect

    token = web_stack.api.register("full@example.com")
    for n in range(10):
        status, body = web_stack.api.post("/api/v1/me/tags", {"id_tag": f"CARD-{n}"}, token=token)
        assert status == 201, body

    page = new_page(chromium, size="phone", viewport=NARROW["viewport"])
    watch = ConsoleWatch.attach(page)
    watch.allow(r"status of (409|429)")  # refused on purpose
    watch.allow(r"net::ERR_")  # offline on purpose
    sign_in(page, web_stack, "full@example.com")
    panel = open_cards(page)
    expect(page.get_by_test_id("card-item")).to_have_count(10)
    expect(panel.get_by_test_id("cards-count")).to_have_text("10 of 10")
    error = page.get_by_test_id("card-error")

    # the eleventh: the server's own 409
    add_card(page, "ELEVENTH")
    expect(error).to_have_text(re.compile(r"already have 10 cards.*remove one first"))
    check(page, "at the limit")

    # the 21st registration in an hour (answered here: the server's limiter is per worker
    # and an hour long): the wait in minutes and as a clock time
    def too_many(route: Any) -> None:
        body = {"status": 429, "title": "Too many attempts", "reason": "retry in 600 s"}
        route.fulfill(status=429, headers={"Retry-After": "600"}, body=json.dumps(body))

    page.route("**/api/v1/me/tags", too_many)
    add_card(page, "NEWCARD")
    expect(error).to_have_text(re.compile(r"Try again in 10 min \(at \d\d:\d\d\)"))
    expect(error).to_be_in_viewport()  # scrolled to: not left under the tab bar
    page.unroute("**/api/v1/me/tags")
    check(page, "rate limited")
    save_screenshot(page, "app-cards-rate-limited")

    page.context.set_offline(True)
    add_card(page, "OFFLINE1")
    expect(error).to_have_text(re.compile(r"You are offline"))
    page.context.set_offline(False)
    assert len(tags_of(web_stack, token)) == 10
    watch.assert_clean()
