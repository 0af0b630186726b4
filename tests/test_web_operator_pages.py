"""The operator pages (issue 13, point 7) in a real headless Chromium against the whole stack
(Mosquitto, ``smartcharge csms --demo-users`` over HTTP + HTTPS, a simulated fleet):
sessions with filters and a CSV download, driver accounts disabled and enabled, a station's
EVSEs and recent events; axe-core clean signed out and in; no horizontal overflow at 1440 or
390 px.

Nothing sleeps: every wait is a Playwright ``expect`` with a timeout, or an HTTP poll with a
deadline (``wait_until``).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser import (  # noqa: F401  (fixtures)
    ConsoleWatch,
    WebStack,
    axe_violations,
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

PAGES = ("sessions", "users", "station")
PASSWORD = "correct horse battery"


def login(stack: WebStack, email: str, password: str) -> tuple[int, Any]:
    return stack.api.call("POST", "/api/v1/auth/login", {"email": email, "password": password})


def token_of(stack: WebStack, who: dict[str, str]) -> str:
    status, body = login(stack, who["email"], who["password"])
    assert status == 200, body
    token: str = body["access_token"]
    return token


def charge_once(stack: WebStack) -> tuple[str, str]:
    """The demo driver charges on the first station's first EVSE and stops; returns
    (station id, session id) once the session is closed and its events are stored."""
    driver = token_of(stack, stack.driver)
    operator = token_of(stack, stack.operator)
    status, body = stack.api.get("/api/v1/stations", secure=False, token="")
    assert status == 200, body
    station = body["stations"][0]
    evse_id = station["evses"][0]["id"]
    status, started = stack.api.call("POST", f"/api/v1/evses/{evse_id}/start", token=driver)
    assert status == 201, started
    session_id: str = started["session_id"]

    def charging() -> bool:
        status, evse = stack.api.get(f"/api/v1/evses/{evse_id}", secure=False, token="")
        return status == 200 and evse["status"] == "Charging"

    wait_until(charging, "the EVSE Charging")
    status, stopped = stack.api.call("POST", f"/api/v1/evses/{evse_id}/stop", token=driver)
    assert status == 200, stopped

    def recorded() -> bool:
        status, body = stack.api.get(f"/api/v1/stations/{station['id']}/events", token=operator)
        kinds = {(e["kind"], e["session_id"]) for e in body["events"]} if status == 200 else set()
        return ("session_ended", session_id) in kinds and any(
            e["status"] == "Charging" for e in body["events"]
        )

    wait_until(recorded, "the session's end and its Charging status stored", timeout=60)
    return station["id"], session_id


def no_horizontal_overflow(page: Any) -> None:
    width = page.evaluate("() => document.documentElement.scrollWidth")
    viewport = page.evaluate("() => window.innerWidth")
    assert width <= viewport, f"{page.url}: {width} px wide in a {viewport} px window"


def sign_in(page: Any, stack: WebStack) -> None:
    page.get_by_test_id("email").fill(stack.operator["email"])
    page.get_by_test_id("password").fill(stack.operator["password"])
    page.get_by_test_id("login").click()
    expect(page.get_by_test_id("whoami")).to_have_text(stack.operator["email"])


def assert_axe_clean(page: Any, state: str) -> None:
    found = axe_violations(page)
    assert found == [], f"{page.url} {state}: {found}"


@pytest.fixture
def desktop(chromium: Any) -> Iterator[tuple[Any, ConsoleWatch]]:  # noqa: F811
    page = new_page(chromium, size="desktop", position=None, accept_downloads=True)
    watch = ConsoleWatch.attach(page)
    yield page, watch
    watch.assert_clean()
    page.context.close()


def test_the_operator_pages_list_export_manage_and_show_a_station(
    chromium: Any,  # noqa: F811
    web_stack: WebStack,  # noqa: F811
    desktop: tuple[Any, ConsoleWatch],
    tmp_path: Path,
) -> None:
    stack = web_stack
    station_id, session_id = charge_once(stack)
    victim = {"email": "victim@example.com", "password": PASSWORD}
    status, body = stack.api.call("POST", "/api/v1/auth/register", victim)
    assert status == 201, body
    page, _ = desktop

    # Sessions: signed out, then in; the session is listed; the filters narrow it.
    page.goto(f"{stack.https_url}/dashboard/sessions")
    expect(page.get_by_test_id("login")).to_be_visible()
    assert_axe_clean(page, "signed out")
    sign_in(page, stack)
    row = page.locator(f'tr[data-session="{session_id}"]')
    expect(row).to_be_visible()
    expect(row).to_contain_text(stack.driver["email"])
    expect(row).to_contain_text("Closed")
    page.locator("#f-station").select_option(station_id)
    page.locator("#f-status").select_option("open")
    page.get_by_test_id("apply").click()
    expect(row).to_have_count(0)
    assert f"station={station_id}" in page.url
    page.locator("#f-status").select_option("closed")
    page.get_by_test_id("apply").click()
    expect(row).to_be_visible()
    assert_axe_clean(page, "signed in")
    no_horizontal_overflow(page)
    save_screenshot(page, "operator-sessions")

    # The CSV download: the same filters, a header row, the session.
    with page.expect_download() as download_info:
        page.get_by_test_id("csv").click()
    saved = tmp_path / "sessions.csv"
    download_info.value.save_as(saved)
    rows = list(csv.reader(io.StringIO(saved.read_text(encoding="utf-8"))))
    assert rows[0][:3] == ["session_id", "station_id", "evse_id"]
    assert [r[0] for r in rows[1:]] == [session_id]
    assert rows[1][3] == stack.driver["email"]

    # Users: disable the victim (after a confirmation), which locks them out; enable again.
    page.get_by_role("link", name="Users").click()
    victim_row = page.locator('tr[data-email="victim@example.com"]')
    expect(victim_row).to_be_visible()
    expect(page.locator(f'tr[data-email="{stack.driver["email"]}"]')).to_contain_text("Active")
    assert_axe_clean(page, "signed in")
    no_horizontal_overflow(page)
    victim_row.get_by_role("button", name="Disable victim@example.com").click()
    expect(page.locator("#confirm")).to_be_visible()
    assert_axe_clean(page, "confirming")
    page.get_by_test_id("confirm").click()
    expect(victim_row).to_contain_text("Disabled")
    assert login(stack, victim["email"], victim["password"])[0] == 401
    victim_row.get_by_role("button", name="Enable victim@example.com").click()
    page.get_by_test_id("confirm").click()
    expect(victim_row).to_contain_text("Active")
    assert login(stack, victim["email"], victim["password"])[0] == 200
    page.locator("#q").fill("VICTIM")
    page.get_by_test_id("search").click()
    expect(page.locator("tbody#rows tr")).to_have_count(1)
    save_screenshot(page, "operator-users")

    # The station: its EVSEs and its recent events, the session among them.
    page.goto(f"{stack.https_url}/dashboard/station?id={station_id}")
    expect(page.locator("tr[data-evse]")).to_have_count(stack.evses_per_station)
    events = page.locator("tr[data-kind]")
    expect(events.filter(has_text="Session ended").first).to_be_visible()
    expect(events.filter(has_text="Session started").first).to_be_visible()
    expect(page.locator('tr[data-kind="status"]').filter(has_text="Charging").first).to_be_visible()
    assert_axe_clean(page, "signed in")
    no_horizontal_overflow(page)
    save_screenshot(page, "operator-station")
    page.get_by_role("link", name="Sessions at this station").click()
    expect(page.locator(f'tr[data-session="{session_id}"]')).to_be_visible()
    page.get_by_role("link", name="Stations").click()
    expect(page.get_by_test_id("station-list").locator("li")).to_have_count(stack.stations)


def test_the_operator_pages_fit_a_phone_and_refuse_a_driver(
    chromium: Any,  # noqa: F811
    web_stack: WebStack,  # noqa: F811
) -> None:
    stack = web_stack
    phone = new_page(chromium, size="phone", position=None)
    watch = ConsoleWatch.attach(phone)
    phone.goto(f"{stack.https_url}/dashboard/users")
    expect(phone.get_by_test_id("login")).to_be_visible()
    no_horizontal_overflow(phone)
    sign_in(phone, stack)
    status, body = stack.api.get("/api/v1/stations", secure=False, token="")
    assert status == 200, body
    station = body["stations"][0]["id"]
    for name in (*PAGES, f"station?id={station}"):
        phone.goto(f"{stack.https_url}/dashboard/{name}")
        expect(phone.get_by_test_id("whoami")).to_have_text(stack.operator["email"])
        if "?id=" in name:
            expect(phone.locator("tr[data-evse]")).to_have_count(stack.evses_per_station)
        no_horizontal_overflow(phone)
        assert_axe_clean(phone, "signed in at 390 px")
        save_screenshot(phone, f"operator-{name.replace('?id=', '-')}-phone", full_page=True)
    watch.assert_clean()

    # Signed out on each page, axe-clean; a driver's login is refused with a word.
    desktop = new_page(chromium, size="desktop", position=None)
    watch = ConsoleWatch.attach(desktop)
    for name in PAGES:
        desktop.goto(f"{stack.https_url}/dashboard/{name}")
        expect(desktop.get_by_test_id("login")).to_be_visible()
        assert_axe_clean(desktop, "signed out")
    desktop.get_by_test_id("email").fill(stack.driver["email"])
    desktop.get_by_test_id("password").fill(stack.driver["password"])
    desktop.get_by_test_id("login").click()
    expect(desktop.locator("#login-error")).to_contain_text("for operators")
    # Plain HTTP leads to HTTPS, the query kept.
    desktop.goto(f"{stack.http_url}/dashboard/station?id=x")
    assert desktop.url.startswith(f"{stack.https_url}/dashboard/station?id=x")
    watch.assert_clean()
