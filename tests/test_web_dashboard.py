"""The operator dashboard at ``/dashboard`` in a real headless Chromium, against the whole stack
(Mosquitto, ``smartcharge csms`` over HTTP + HTTPS, a simulated fleet), with the driver app at
``/app`` in a second browser context (phone size) for the combined scenario of issue 4.

Nothing sleeps: every wait is a Playwright ``expect``/``wait_for`` with a timeout, or an
HTTP poll with a deadline (``wait_until``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from tests.browser import (  # noqa: F401  (fixtures)
    ConsoleWatch,
    WebStack,
    chromium,
    new_page,
    playwright_sync,
    save_screenshot,
    web_stack,
)
from tests.driver_client import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(300)]

expect: Any = pytest.importorskip(
    "playwright.sync_api", reason="the playwright package is missing: pip install playwright"
).expect

LIVE = 30_000  # ms: a live change reaches the page (simulated fleet at speed 60)


# -- helpers ------------------------------------------------------------------------------------


def _stations(stack: WebStack) -> list[dict[str, Any]]:
    status, body = stack.api.get("/api/v1/stations", secure=False, token="")
    assert status == 200, body
    stations: list[dict[str, Any]] = body["stations"]
    return stations


def _evse(stack: WebStack, evse_id: str) -> dict[str, Any]:
    status, body = stack.api.get(f"/api/v1/evses/{evse_id}", secure=False, token="")
    assert status == 200, body
    return dict(body)


def _number(text: str) -> float:
    found = re.search(r"-?\d+(?:[.,]\d+)?", text)
    assert found, f"no number in {text!r}"
    return float(found.group().replace(",", "."))


class Dashboard:
    """The operator's page (desktop size), signed in."""

    def __init__(self, browser: Any, stack: WebStack) -> None:
        self.page = new_page(browser, size="desktop", position=None)
        self.watch = ConsoleWatch.attach(self.page)
        self.page.goto(stack.dashboard_url)
        self.page.get_by_test_id("email").fill(stack.operator["email"])
        self.page.get_by_test_id("password").fill(stack.operator["password"])
        self.page.get_by_test_id("login").click()
        expect(self.page.get_by_test_id("evse-card")).to_have_count(
            stack.stations * stack.evses_per_station
        )
        expect(self.page.locator("#link-state")).to_have_text("Live", timeout=LIVE)

    def card(self, evse_id: str) -> Any:
        return self.page.locator(f'[data-testid="evse-card"][data-evse-id="{evse_id}"]')

    def part(self, evse_id: str, testid: str) -> Any:
        return self.card(evse_id).get_by_test_id(testid)

    def status(self, evse_id: str) -> Any:
        return self.part(evse_id, "status")


class DriverApp:
    """The driver app (phone size) in its own browser context, signed in with the demo driver."""

    def __init__(self, browser: Any, stack: WebStack) -> None:
        self.page = new_page(browser, size="phone")
        self.watch = ConsoleWatch.attach(self.page)
        self.page.goto(stack.app_url)
        self.page.get_by_test_id("email").fill(stack.driver["email"])
        self.page.get_by_test_id("password").fill(stack.driver["password"])
        self.page.get_by_test_id("login").click()
        expect(self.page.get_by_test_id("evse-item").first).to_be_visible(timeout=LIVE)

    def item(self, evse_id: str) -> Any:
        return self.page.locator(f'[data-testid="evse-item"][data-evse-id="{evse_id}"]')

    def first_available(self, *, other_than: str | None = None) -> str:
        items = self.page.locator('[data-testid="evse-item"][data-status="Available"]')
        expect(items.first).to_be_visible()
        for i in range(items.count()):
            evse_id: str = items.nth(i).get_attribute("data-evse-id")
            if evse_id != other_than:
                return evse_id
        raise AssertionError("no other Available EVSE in the driver's list")


@pytest.fixture
def dashboard(chromium: Any, web_stack: WebStack) -> Iterator[Dashboard]:  # noqa: F811
    board = Dashboard(chromium, web_stack)
    yield board
    board.watch.assert_clean()


@pytest.fixture
def driver(chromium: Any, web_stack: WebStack) -> Iterator[DriverApp]:  # noqa: F811
    app = DriverApp(chromium, web_stack)
    yield app
    app.watch.assert_clean()


# -- 1. the fleet at a glance -------------------------------------------------------------------


def test_operator_sees_every_station_on_the_map_and_every_evse_card(
    dashboard: Dashboard,
    web_stack: WebStack,  # noqa: F811
) -> None:
    page = dashboard.page
    stations = _stations(web_stack)
    evse_ids = [e["id"] for s in stations for e in s["evses"]]

    # every station is on the map (as a pin, or counted in a cluster: tests/test_web_map.py)
    expect(page.get_by_test_id("map")).to_have_attribute("data-stations", str(len(stations)))

    expect(page.get_by_test_id("station")).to_have_count(len(stations))
    for evse_id in evse_ids:
        card = dashboard.card(evse_id)
        expect(card).to_have_count(1)
        expect(dashboard.status(evse_id)).to_have_text("Available")
        expect(card.get_by_test_id("maintenance-toggle")).not_to_be_checked()
        expect(card.get_by_test_id("maintenance-pending")).to_be_hidden()
        expect(card.get_by_test_id("age")).to_have_text(re.compile(r"ago|just now"))
    # the switch is a real, labelled checkbox
    toggle = dashboard.part(evse_ids[0], "maintenance-toggle")
    expect(toggle).to_have_attribute("type", "checkbox")
    expect(page.get_by_role("switch", name="Maintenance").first).to_be_visible()

    totals = page.get_by_test_id("totals")
    expect(totals).to_contain_text(f"{len(evse_ids)} Available")
    expect(totals).to_contain_text(f"{len(stations)} / {len(stations)}")
    expect(page.get_by_test_id("power-chart").locator(".chart__line")).to_have_count(1)

    # the ages tick without any event
    age = dashboard.part(evse_ids[0], "age")
    expect(age).to_have_text(re.compile(r"\d+ s ago|min ago"), timeout=10_000)
    save_screenshot(page, "dashboard")

    # a pin (by keyboard, as a button) opens its station and highlights it
    marker = page.get_by_test_id("map").get_by_test_id("map-marker").first
    chosen = marker.get_attribute("data-station-id")
    marker.focus()
    page.keyboard.press("Enter")
    group = page.locator(f'[data-testid="station"][data-station-id="{chosen}"]')
    expect(group).to_have_class(re.compile("is-highlighted"))
    expect(group).to_be_in_viewport()
    expect(page.locator(f'[data-testid="map-marker"][data-station-id="{chosen}"]')).to_have_class(
        re.compile("is-selected")
    )


# -- 2. the combined scenario of issue 4 --------------------------------------------------------


def test_operator_maintenance_interrupts_the_drivers_reservation_live(
    dashboard: Dashboard,
    driver: DriverApp,
    web_stack: WebStack,  # noqa: F811
) -> None:
    app = driver.page
    evse_id = driver.first_available()

    # the driver reserves the nearest EVSE; the countdown ticks
    driver.item(evse_id).get_by_test_id("reserve").click()
    countdown = app.get_by_test_id("countdown")
    expect(countdown).to_be_visible()
    expect(countdown).to_have_text(re.compile(r"^1[45]:\d\d$"))
    first = countdown.inner_text()
    expect(countdown).not_to_have_text(first, timeout=5_000)
    save_screenshot(app, "app-reserved")

    # the dashboard shows it live as Reserved
    expect(dashboard.status(evse_id)).to_have_text("Reserved", timeout=LIVE)
    assert _evse(web_stack, evse_id)["reservation"] is not None

    # the operator switches that EVSE to maintenance
    dashboard.part(evse_id, "maintenance-toggle").check()
    expect(dashboard.part(evse_id, "answer")).to_contain_text("maintenance accepted", timeout=LIVE)
    expect(dashboard.status(evse_id)).to_have_text("Unavailable", timeout=LIVE)
    expect(dashboard.part(evse_id, "maintenance-toggle")).to_be_checked()

    # the driver's page shows the interruption and its reason, without a reload
    status = app.get_by_test_id("reservation-status")
    expect(status).to_contain_text(re.compile("interrupted", re.I), timeout=LIVE)
    expect(status).to_contain_text("maintenance")
    save_screenshot(app, "app-interrupted")

    # ... and the operator's feed has it too
    feed = dashboard.page.get_by_test_id("feed-item").filter(has_text=evse_id)
    expect(feed.filter(has_text="interrupted").first).to_be_visible(timeout=LIVE)
    save_screenshot(dashboard.page, "dashboard-interrupted")

    # maintenance off again: Available on both sides
    dashboard.part(evse_id, "maintenance-toggle").uncheck()
    expect(dashboard.status(evse_id)).to_have_text("Available", timeout=LIVE)
    expect(driver.item(evse_id)).to_have_attribute("data-status", "Available", timeout=LIVE)


# -- 3. a driver's charge, seen live on the dashboard -------------------------------------------


def test_driver_charge_shows_live_on_the_dashboard_card(
    dashboard: Dashboard,
    driver: DriverApp,
    web_stack: WebStack,  # noqa: F811
) -> None:
    app = driver.page
    reserved = driver.first_available()
    driver.item(reserved).get_by_test_id("reserve").click()
    expect(app.get_by_test_id("countdown")).to_be_visible()
    evse_id = driver.first_available(other_than=reserved)

    # the driver starts on another EVSE; SoC rises on the phone
    driver.item(evse_id).get_by_test_id("start").click()
    charging = app.get_by_test_id("charging")
    expect(charging).to_be_visible(timeout=LIVE)
    soc = charging.get_by_test_id("soc")
    expect(soc).to_have_text(re.compile(r"\d"), timeout=LIVE)
    first_soc = _number(soc.inner_text())
    expect(soc).not_to_have_text(soc.inner_text(), timeout=LIVE)
    assert _number(soc.inner_text()) > first_soc

    # the same EVSE on the dashboard: Charging, SoC rising, power and a session
    card_soc = dashboard.part(evse_id, "soc")
    expect(dashboard.status(evse_id)).to_have_text("Charging", timeout=LIVE)
    expect(card_soc).to_have_text(re.compile(r"\d+ %"), timeout=LIVE)
    seen = _number(card_soc.inner_text())
    wait_until(
        lambda: _number(card_soc.inner_text()) > seen, "the card's SoC to rise", timeout=LIVE / 1000
    )
    expect(dashboard.part(evse_id, "power")).not_to_have_text(re.compile(r"^0[.,]0 kW$"))
    expect(dashboard.part(evse_id, "session")).to_have_text(re.compile(r"[0-9a-f]{6,}"))
    expect(dashboard.part(evse_id, "energy")).not_to_have_text(re.compile(r"^0[.,]0 kWh$"))
    expect(dashboard.part(evse_id, "age")).to_have_text(re.compile(r"just now|\d+ s ago"))
    expect(dashboard.page.get_by_test_id("totals")).to_contain_text("1 Charging")
    expect(dashboard.status(reserved)).to_have_text("Reserved")
    chart = dashboard.page.get_by_test_id("power-chart")
    expect(chart).to_have_attribute(
        "aria-label", re.compile(r"now [1-9]\d*[.,]\d kW"), timeout=LIVE
    )
    save_screenshot(app, "app-charging")
    save_screenshot(dashboard.page, "dashboard-charging")

    # the driver stops: Finishing (or already Available) on the card, live
    app.get_by_test_id("stop").click()
    expect(dashboard.status(evse_id)).to_have_text(
        re.compile(r"^(Finishing|Available)$"), timeout=LIVE
    )
    expect(dashboard.part(evse_id, "session")).to_contain_text("ended", timeout=LIVE)
    expect(dashboard.part(evse_id, "power")).to_have_text(re.compile(r"^0[.,]0 kW$"), timeout=LIVE)


# -- 4. maintenance while a session runs --------------------------------------------------------


def test_maintenance_while_charging_is_pending_until_the_session_ends(
    dashboard: Dashboard,
    web_stack: WebStack,  # noqa: F811
) -> None:
    evse_id = _stations(web_stack)[0]["evses"][0]["id"]
    card = dashboard.card(evse_id)

    # the operator starts a session from the card; the station's answer is shown
    card.get_by_test_id("start").click()
    expect(card.get_by_test_id("answer")).to_contain_text("start accepted", timeout=LIVE)
    expect(dashboard.status(evse_id)).to_have_text("Charging", timeout=LIVE)

    # maintenance now: pending while the session runs, the EVSE keeps charging
    card.get_by_test_id("maintenance-toggle").check()
    expect(card.get_by_test_id("maintenance-pending")).to_be_visible(timeout=LIVE)
    expect(card.get_by_test_id("answer")).to_contain_text("maintenance pending")
    expect(card.get_by_test_id("maintenance-toggle")).to_be_checked()
    expect(dashboard.status(evse_id)).to_have_text("Charging")
    assert _evse(web_stack, evse_id)["maintenance_pending"] is True

    # info: a live round trip to the station
    card.get_by_test_id("info").click()
    expect(card.get_by_test_id("answer")).to_contain_text("info accepted", timeout=LIVE)
    expect(card.get_by_test_id("answer")).to_contain_text("maintenance pending")
    save_screenshot(dashboard.page, "dashboard-pending")

    # the session ends: maintenance takes over
    card.get_by_test_id("stop").click()
    expect(dashboard.status(evse_id)).to_have_text("Unavailable", timeout=LIVE)
    expect(card.get_by_test_id("maintenance-pending")).to_be_hidden()
    expect(card.get_by_test_id("maintenance-toggle")).to_be_checked()
