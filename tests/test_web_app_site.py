"""Smart charging in the driver app (issue 14, point 4): on a site with a limit, the charging
view says "Limited to X kW by the site", and the driver sets a departure time, which the
CSMS stores for the allocation. Real Chromium at phone size against the real stack."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests import browser
from tests.browser import ConsoleWatch, WebStack, axe_violations, new_page
from tests.test_web_app import available_item, sign_up

playwright_sync = browser.playwright_sync
chromium = browser.chromium
web_stack = browser.web_stack


def operator_token(stack: WebStack) -> str:
    who = stack.logins["operator"]
    status, body = stack.api.post(
        "/api/v1/auth/login", {"email": who["email"], "password": who["password"]}
    )
    assert status == 200, body
    token: str = body["access_token"]
    return token


@pytest.mark.integration
@pytest.mark.timeout(180)
def test_the_charging_view_shows_the_sites_limit_and_takes_a_departure(
    web_stack: WebStack, chromium: Any
) -> None:
    from playwright.sync_api import expect

    status, stations = web_stack.api.get("/api/v1/stations", secure=False)
    assert status == 200
    every = [s["id"] for s in stations["stations"]]
    status, body = web_stack.api.call(
        "PUT",
        "/api/v1/sites/depot",
        {"name": "Depot", "limit_kw": 3, "station_ids": every},
        token=operator_token(web_stack),
    )
    assert status == 201, body

    page = new_page(chromium, size="phone")
    watch = ConsoleWatch.attach(page)
    page.goto(web_stack.app_url)
    sign_up(page, "saver@example.com")
    page.get_by_test_id("use-location").click()
    available_item(page).get_by_test_id("start").click()
    expect(page.get_by_test_id("charging")).to_be_visible()

    # the site gives this lone session its whole 3 kW
    limit = page.get_by_test_id("site-limit")
    expect(limit).to_have_text(re.compile(r"^Limited to 3(\.0)? kW by the site$"), timeout=40_000)

    page.get_by_test_id("departure-time").fill("23:30")
    page.get_by_test_id("departure-form").get_by_role("button").click()
    expect(page.locator("#charging-note")).to_contain_text("Departure set for 23:30")
    assert axe_violations(page) == []
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    watch.assert_clean()
