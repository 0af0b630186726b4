"""The operator dashboard at ``/dashboard`` in a real headless Chromium, against the whole stack
(Mosquitto, ``smartcharge csms`` over HTTP + HTTPS, a simulated fleet), with the driver app at
``/app`` in a second browser context (phone size) for the combined scenario of issue 4.

The dashboard of issue 13: a filtered, sorted, paged table of every EVSE (one tab stop), a
station detail panel on demand (the controls, the answers, the station's alerts), the alerts
panel, honest offline state.

Nothing sleeps: every wait is a Playwright ``expect``/``wait_for`` with a timeout, or an
HTTP poll with a deadline (``wait_until``).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.browser import (  # noqa: F401  (fixtures)
    ConsoleWatch,
    WebStack,
    _free_port,
    axe_violations,
    chromium,
    new_page,
    playwright_sync,
    save_screenshot,
    web_stack,
)
from tests.driver_client import Api, csms_process, wait_until
from tests.support import REPO_ROOT, FleetProcess

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(300)]

expect: Any = pytest.importorskip(
    "playwright.sync_api", reason="the playwright package is missing: pip install playwright"
).expect

LIVE = 30_000  # ms: a live change reaches the page (simulated fleet at speed 60)
CSMS_EXTRA = ("--demo-users",) + (
    ("--map-tiles", "none") if (REPO_ROOT / "gateway" / "map_tiles.py").exists() else ()
)  # the tests reach no tile server (as tests/browser.py's web_stack, where the maps have tiles)
TO = "\u2013"  # the en dash of the page ranges ("1 to 50 of 54")
OFFLINE = 60_000  # ms: a killed station is declared offline (1.5 x keepalive) and shown


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


def _operator_token(stack: WebStack) -> str:
    status, body = stack.api.post(
        "/api/v1/auth/login",
        {"email": stack.operator["email"], "password": stack.operator["password"]},
        token="",
    )
    assert status == 200, body
    token: str = body["access_token"]
    return token


class Dashboard:
    """The operator's page (desktop size), signed in."""

    def __init__(self, browser: Any, stack: WebStack) -> None:
        self.page = new_page(browser, size="desktop", position=None)
        self.watch = ConsoleWatch.attach(self.page)
        self.page.goto(stack.dashboard_url)
        self.page.get_by_test_id("email").fill(stack.operator["email"])
        self.page.get_by_test_id("password").fill(stack.operator["password"])
        self.page.get_by_test_id("login").click()
        total = stack.stations * stack.evses_per_station
        expect(self.rows()).to_have_count(min(total, 50))
        expect(self.page.locator("#link-state")).to_have_text("Live", timeout=LIVE)

    def rows(self) -> Any:
        """The visible table rows (the page's pool keeps hidden spare rows)."""
        return self.page.locator('tr[data-testid="evse-row"]:not([hidden])')

    def row(self, evse_id: str) -> Any:
        return self.page.locator(
            f'tr[data-testid="evse-row"][data-evse-id="{evse_id}"]:not([hidden])'
        )

    @property
    def detail(self) -> Any:
        return self.page.get_by_test_id("station-detail")

    def open(self, evse_id: str) -> Any:
        """Open the station of an EVSE from its table row (filtering to it first)."""
        self.page.get_by_test_id("filter").fill(evse_id)
        self.row(evse_id).click()
        expect(self.detail).to_be_visible()
        expect(self.detail).to_have_attribute("data-station-id", evse_id.split(".")[0])
        return self.card(evse_id)

    def card(self, evse_id: str) -> Any:
        return self.detail.locator(f'[data-testid="evse-card"][data-evse-id="{evse_id}"]')

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


@dataclass
class TwoFleets:
    """A stack with more EVSEs than one table page, from two fleet processes (one to kill)."""

    stack: WebStack
    doomed: FleetProcess
    doomed_station: str


@pytest.fixture
def two_fleets(mosquitto_url: str, tmp_path: Path) -> Iterator[TwoFleets]:
    """Mosquitto + ``smartcharge csms --demo-users`` + 26 stations "st" and 1 station "ko"
    (own process), 2 EVSEs each: 54 EVSEs, two table pages."""
    main_n, evses = 26, 2
    http_port, https_port = _free_port(), _free_port()
    data_dir = tmp_path / "csms"
    with (
        csms_process(
            mosquitto_url, data_dir, http_port, https_port, tmp_path / "csms.log",
            extra=CSMS_EXTRA,
        ),
        FleetProcess(mosquitto_url, tmp_path / "fleet", stations=main_n, evses=evses, speed=60),
        FleetProcess(
            mosquitto_url, tmp_path / "fleet-ko", stations=1, evses=evses, speed=60, prefix="ko"
        ) as doomed,
    ):  # fmt: skip
        cert = data_dir / "tls" / "cert.pem"
        wait_until(cert.exists, "the self-signed certificate")
        api = Api(http_port, https_port, cert)
        total = (main_n + 1) * evses

        def all_available() -> bool:
            status, body = api.get("/api/v1/stations", secure=False)
            found = [e for s in body["stations"] for e in s["evses"]] if status == 200 else []
            return len(found) == total and all(e["status"] == "Available" for e in found)

        wait_until(all_available, f"{total} EVSEs Available", timeout=90)
        logins_path = data_dir / "demo-logins.json"
        logins = wait_until(
            lambda: json.loads(logins_path.read_text()) if logins_path.exists() else None,
            "demo-logins.json",
        )
        _, body = api.get("/api/v1/stations", secure=False)
        ko = next(s["id"] for s in body["stations"] if s["id"].startswith("ko-"))
        stack = WebStack(
            http_url=f"http://127.0.0.1:{http_port}",
            https_url=f"https://127.0.0.1:{https_port}",
            api=api,
            data_dir=data_dir,
            logins=logins,
            stations=main_n + 1,
            evses_per_station=evses,
        )
        yield TwoFleets(stack=stack, doomed=doomed, doomed_station=ko)


# -- 1. the fleet at a glance -------------------------------------------------------------------


def test_operator_sees_every_evse_in_the_table_and_every_station_on_the_map(
    dashboard: Dashboard,
    web_stack: WebStack,  # noqa: F811
) -> None:
    page = dashboard.page
    stations = _stations(web_stack)
    evse_ids = [e["id"] for s in stations for e in s["evses"]]

    # every station is on the map (as a pin, or counted in a cluster: tests/test_web_map.py)
    expect(page.get_by_test_id("map")).to_have_attribute("data-stations", str(len(stations)))

    # one row per EVSE, no card until a station is opened
    expect(dashboard.rows()).to_have_count(len(evse_ids))
    expect(page.get_by_test_id("evse-card")).to_have_count(0)
    for evse_id in evse_ids:
        row = dashboard.row(evse_id)
        expect(row.get_by_test_id("status")).to_have_text("Available")
        expect(row.get_by_test_id("cell-age")).to_have_text(re.compile(r"ago|just now"))
    expect(page.get_by_test_id("page-info")).to_contain_text(
        f"1{TO}{len(evse_ids)} of {len(evse_ids)}"
    )

    totals = page.get_by_test_id("totals")
    expect(totals).to_contain_text(f"{len(evse_ids)} Available")
    expect(totals).to_contain_text(f"{len(stations)} / {len(stations)}")
    expect(page.get_by_test_id("power-chart").locator(".chart__line")).to_have_count(1)

    # the ages tick without any event
    age = dashboard.row(evse_ids[0]).get_by_test_id("cell-age")
    expect(age).to_have_text(re.compile(r"\d+ s ago|min ago"), timeout=10_000)
    save_screenshot(page, "dashboard")

    # a pin (by keyboard, as a button) opens its station's detail (the map: tests/test_web_map.py)
    marker = page.get_by_test_id("map").get_by_test_id("map-marker").first
    chosen = marker.get_attribute("data-station-id")
    evses = next(len(s["evses"]) for s in stations if s["id"] == chosen)
    marker.focus()
    page.keyboard.press("Enter")
    expect(dashboard.detail).to_be_visible()
    expect(dashboard.detail).to_have_attribute("data-station-id", chosen)
    expect(dashboard.detail.get_by_test_id("evse-card")).to_have_count(evses)
    expect(page.locator(f'[data-testid="map-marker"][data-station-id="{chosen}"]')).to_have_class(
        re.compile("is-selected")
    )


def test_table_filters_sorts_and_pages_and_opens_the_right_station(
    chromium: Any,  # noqa: F811
    two_fleets: TwoFleets,
) -> None:
    stack = two_fleets.stack
    board = Dashboard(chromium, stack)
    page = board.page
    total = stack.stations * stack.evses_per_station
    all_ids = sorted(e["id"] for s in _stations(stack) for e in s["evses"])

    # paged: 50 rows, then the rest
    info = page.get_by_test_id("page-info")
    expect(info).to_contain_text(f"1{TO}50 of {total}")
    expect(page.get_by_test_id("page-prev")).to_be_disabled()
    page.get_by_test_id("page-next").click()
    expect(info).to_contain_text(f"51{TO}{total} of {total}")
    expect(board.rows()).to_have_count(total - 50)
    expect(page.get_by_test_id("page-next")).to_be_disabled()

    # the site filter: one station's EVSEs only, back on page 1
    station = two_fleets.doomed_station
    page.get_by_test_id("filter").fill(station)
    expect(board.rows()).to_have_count(2)
    for i in range(2):
        expect(board.rows().nth(i)).to_have_attribute("data-station-id", station)
    expect(info).to_contain_text(f"1{TO}2 of 2")
    page.get_by_test_id("filter").fill("no-such-site")
    expect(board.rows()).to_have_count(0)
    expect(info).to_have_text("No EVSE matches the filter")
    page.get_by_test_id("filter").fill("")

    # the status filter
    page.get_by_test_id("status-filter").select_option("Charging")
    expect(board.rows()).to_have_count(0)
    page.get_by_test_id("status-filter").select_option("Available")
    expect(board.rows()).to_have_count(50)
    page.get_by_test_id("status-filter").select_option("")

    # sorting: by EVSE, then the other way round
    header = page.locator('th[data-col="evse"]')
    header.get_by_role("button").click()
    expect(header).to_have_attribute("aria-sort", "ascending")
    expect(board.rows().first).to_have_attribute("data-evse-id", all_ids[0])
    header.get_by_role("button").click()
    expect(header).to_have_attribute("aria-sort", "descending")
    expect(board.rows().first).to_have_attribute("data-evse-id", all_ids[-1])

    # the table is one tab stop; arrows move, Enter opens the focused row's station
    assert page.locator('tr[data-testid="evse-row"][tabindex="0"]').count() == 1
    board.rows().first.click()
    expect(board.detail).to_have_attribute("data-station-id", all_ids[-1].split(".")[0])
    page.keyboard.press("Escape")
    expect(board.detail).to_be_hidden()
    expect(board.rows().first).to_be_focused()
    for _ in range(2):
        page.keyboard.press("ArrowDown")
    expect(board.rows().nth(2)).to_be_focused()
    page.keyboard.press("Enter")
    third = all_ids[-3]
    expect(board.detail).to_have_attribute("data-station-id", third.split(".")[0])
    expect(board.card(third)).to_be_visible()
    expect(board.detail.get_by_test_id("detail-page")).to_have_attribute(
        "href", f"/dashboard/station?id={third.split('.')[0]}"
    )
    # every maintenance switch has its own name
    expect(page.get_by_role("switch", name=f"Maintenance EVSE {third}")).to_have_count(1)

    # a command's answer is shown, then expires (30 s) although nothing else changed
    card = board.card(third)
    card.get_by_test_id("info").click()
    answer = card.get_by_test_id("answer")
    expect(answer).to_contain_text("info accepted", timeout=LIVE)
    expect(answer).to_have_text("", timeout=45_000)
    expect(board.status(third)).to_have_text("Available")
    board.watch.assert_clean()


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

    # the dashboard's table shows it live as Reserved
    expect(dashboard.row(evse_id).get_by_test_id("status")).to_have_text("Reserved", timeout=LIVE)
    assert _evse(web_stack, evse_id)["reservation"] is not None

    # the operator opens the station and switches that EVSE to maintenance
    dashboard.open(evse_id)
    dashboard.page.get_by_role("switch", name=f"Maintenance EVSE {evse_id}").check()
    expect(dashboard.part(evse_id, "answer")).to_contain_text("maintenance accepted", timeout=LIVE)
    expect(dashboard.status(evse_id)).to_have_text("Unavailable", timeout=LIVE)
    expect(dashboard.part(evse_id, "maintenance-toggle")).to_be_checked()
    expect(dashboard.row(evse_id).get_by_test_id("status")).to_have_text("Unavailable")

    # the driver's page shows the interruption and its reason, without a reload
    status = app.get_by_test_id("reservation-status")
    expect(status).to_contain_text(re.compile("interrupted", re.I), timeout=LIVE)
    expect(status).to_contain_text("maintenance")
    save_screenshot(app, "app-interrupted")

    # ... and the operator's alerts have it too, also in the station's detail
    alert = dashboard.page.get_by_test_id("alerts").get_by_test_id("alert-item")
    expect(alert.filter(has_text=evse_id).filter(has_text="nterrupted").first).to_be_visible(
        timeout=LIVE
    )
    expect(dashboard.detail.get_by_test_id("detail-alerts")).to_contain_text(evse_id)
    save_screenshot(dashboard.page, "dashboard-interrupted")

    # maintenance off again: Available on both sides
    dashboard.part(evse_id, "maintenance-toggle").uncheck()
    expect(dashboard.status(evse_id)).to_have_text("Available", timeout=LIVE)
    expect(driver.item(evse_id)).to_have_attribute("data-status", "Available", timeout=LIVE)


# -- 3. a driver's charge, seen live on the dashboard -------------------------------------------


def test_driver_charge_shows_live_in_the_table_and_the_detail(
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

    # the same EVSE's row: Charging, SoC rising, power and a session
    row = dashboard.row(evse_id)
    row_soc = row.get_by_test_id("cell-soc")
    expect(row.get_by_test_id("status")).to_have_text("Charging", timeout=LIVE)
    expect(row_soc).to_have_text(re.compile(r"\d+ %"), timeout=LIVE)
    seen = _number(row_soc.inner_text())
    wait_until(
        lambda: _number(row_soc.inner_text()) > seen, "the row's SoC to rise", timeout=LIVE / 1000
    )
    expect(row.get_by_test_id("cell-power")).not_to_have_text(re.compile(r"^0[.,]0 kW$"))
    expect(row.get_by_test_id("cell-session")).to_have_text(
        re.compile(r"[0-9a-f]{6,}"), timeout=LIVE
    )
    expect(dashboard.page.get_by_test_id("totals")).to_contain_text("1 Charging")
    expect(dashboard.row(reserved).get_by_test_id("status")).to_have_text("Reserved")
    chart = dashboard.page.get_by_test_id("power-chart")
    expect(chart).to_have_attribute(
        "aria-label", re.compile(r"now [1-9]\d*[.,]\d kW"), timeout=LIVE
    )

    # ... and in its station's detail
    dashboard.open(evse_id)
    expect(dashboard.status(evse_id)).to_have_text("Charging")
    expect(dashboard.part(evse_id, "energy")).not_to_have_text(
        re.compile(r"^0[.,]0 kWh$"), timeout=LIVE
    )
    expect(dashboard.part(evse_id, "age")).to_have_text(re.compile(r"just now|\d+ s ago"))
    save_screenshot(app, "app-charging")
    save_screenshot(dashboard.page, "dashboard-charging")

    # the driver stops: Finishing (or already Available), live
    app.get_by_test_id("stop").click()
    expect(dashboard.status(evse_id)).to_have_text(
        re.compile(r"^(Finishing|Available)$"), timeout=LIVE
    )
    expect(dashboard.part(evse_id, "session")).to_contain_text("ended", timeout=LIVE)
    expect(dashboard.part(evse_id, "power")).to_have_text(re.compile(r"^0[.,]0 kW$"), timeout=LIVE)
    expect(row.get_by_test_id("cell-session")).to_contain_text("ended")


# -- 4. maintenance while a session runs --------------------------------------------------------


def test_maintenance_while_charging_is_pending_until_the_session_ends(
    dashboard: Dashboard,
    web_stack: WebStack,  # noqa: F811
) -> None:
    evse_id = _stations(web_stack)[0]["evses"][0]["id"]
    card = dashboard.open(evse_id)

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


# -- 5. honest state: an offline station --------------------------------------------------------


def test_offline_evse_shows_its_last_report_and_disables_its_controls(
    chromium: Any,  # noqa: F811
    two_fleets: TwoFleets,
) -> None:
    stack = two_fleets.stack
    board = Dashboard(chromium, stack)
    station = two_fleets.doomed_station
    evse_id = f"{station}.1"
    card = board.open(evse_id)
    controls = ("start", "info", "maintenance-toggle")
    for control in controls:
        expect(card.get_by_test_id(control)).to_be_enabled()
    card.get_by_test_id("info").click()
    answer = card.get_by_test_id("answer")
    expect(answer).to_contain_text("info accepted", timeout=LIVE)

    # the station's process dies without a word: the broker's last will makes it Offline
    two_fleets.doomed.kill()
    expect(board.status(evse_id)).to_have_text("Offline", timeout=OFFLINE)
    note = board.detail.get_by_test_id("offline-note")
    expect(note).to_be_visible()
    # the age of the last report, ticking (the broker sends the will at once: just now, first)
    expect(note).to_contain_text(re.compile(r"last report (\d+ s|\d+ min) ago"), timeout=LIVE)
    expect(note).to_contain_text("disabled")
    for control in ("start", "stop", "info", "maintenance-toggle"):
        expect(card.get_by_test_id(control)).to_be_disabled()
    expect(card.get_by_test_id("age")).to_contain_text("last report")
    expect(board.detail.get_by_test_id("station-online")).to_have_text("Offline")
    # the answer given before belonged to the live station: it is gone
    expect(answer).to_have_text("")
    row = board.row(evse_id)
    expect(row.get_by_test_id("status")).to_have_text("Offline")
    expect(row.get_by_test_id("cell-age")).to_contain_text(re.compile(r"^last report"))
    board.page.get_by_test_id("filter").fill("")
    board.page.get_by_test_id("status-filter").select_option("Offline")
    expect(board.rows()).to_have_count(stack.evses_per_station)
    save_screenshot(board.page, "dashboard-offline")
    board.watch.assert_clean()


# -- 6. alerts ------------------------------------------------------------------------------------


def test_alerts_show_csms_time_filter_and_acknowledge(
    chromium: Any,  # noqa: F811
    two_fleets: TwoFleets,
) -> None:
    stack = two_fleets.stack
    status, _ = stack.api.get("/api/v1/alerts", token=_operator_token(stack))
    board = Dashboard(chromium, stack)
    page = board.page
    state = page.get_by_test_id("alerts-state")
    assert status == 200  # the alert log (gateway/alerts API) is there
    expect(state).to_be_hidden()

    station = two_fleets.doomed_station
    two_fleets.doomed.kill()
    items = page.get_by_test_id("alerts").locator(
        f'[data-testid="alert-item"][data-kind="station_offline"][data-station-id="{station}"]'
    )
    expect(items).to_have_count(1, timeout=OFFLINE)
    item = items.first
    expect(item.locator("time")).to_have_text(re.compile(r"\d\d:\d\d:\d\d"))
    stored = stack.api.get(f"/api/v1/alerts?station={station}", token=_operator_token(stack))[1]
    offline = next(a for a in stored["alerts"] if a["kind"] == "station_offline")
    expect(item).to_have_attribute("data-alert-id", str(offline["id"]))

    # filters: severity and station
    page.get_by_test_id("alert-severity").select_option("good")
    expect(items).to_have_count(0)
    page.get_by_test_id("alert-severity").select_option("bad")
    expect(items).to_have_count(1)
    page.get_by_test_id("alert-station").fill("no-such-station")
    expect(items).to_have_count(0)
    page.get_by_test_id("alert-station").fill(station)
    expect(items).to_have_count(1)

    # acknowledge: who and when, stored
    item.get_by_test_id("ack").click()
    expect(item.get_by_test_id("acked")).to_contain_text(
        f"Acknowledged by {stack.operator['email']}"
    )
    stored = stack.api.get(f"/api/v1/alerts?station={station}", token=_operator_token(stack))[1]
    acked = next(a for a in stored["alerts"] if a["id"] == offline["id"])
    assert acked["acked_by"] == stack.operator["email"]
    assert acked["acked_at"] is not None
    board.watch.assert_clean()


# -- 7. accessibility -----------------------------------------------------------------------------


def test_dashboard_has_no_serious_axe_violations_signed_out_and_in(
    chromium: Any,  # noqa: F811
    web_stack: WebStack,  # noqa: F811
) -> None:
    page = new_page(chromium, size="desktop", position=None)
    watch = ConsoleWatch.attach(page)
    page.goto(web_stack.dashboard_url)
    expect(page.get_by_test_id("login")).to_be_visible()
    assert axe_violations(page) == []

    board = Dashboard(chromium, web_stack)
    assert axe_violations(board.page) == []
    evse_id = _stations(web_stack)[0]["evses"][0]["id"]
    board.open(evse_id)
    assert axe_violations(board.page) == []
    # the table is one tab stop (a roving tabindex over its rows)
    tab_stops = board.page.evaluate(
        "() => [...document.querySelectorAll('#evse-rows tr')].filter(r => r.tabIndex >= 0).length"
    )
    assert tab_stops == 1
    watch.assert_clean()
    board.watch.assert_clean()


# -- 8. the picture of the README -----------------------------------------------------------------

SCREENSHOT_ENV = "SMARTCHARGE_FLEET_SCREENSHOT"


@pytest.mark.timeout(600)
@pytest.mark.screenshots
def test_screenshot_of_the_dashboard_at_200_stations(
    chromium: Any,  # noqa: F811
    mosquitto_url: str,
    tmp_path: Path,
) -> None:
    """``SMARTCHARGE_FLEET_SCREENSHOT=docs/screenshots``: 200 stations x 2 at speed 30 with
    sessions running, as ``dashboard.png`` there (slow: not part of a normal run)."""
    out = os.environ.get(SCREENSHOT_ENV)
    if not out:  # asked for the app's screenshots only
        out = str(tmp_path / "screenshots")
    stations, evses = 200, 2
    http_port, https_port = _free_port(), _free_port()
    data_dir = tmp_path / "csms"
    with (
        csms_process(
            mosquitto_url, data_dir, http_port, https_port, tmp_path / "csms.log",
            extra=CSMS_EXTRA,
        ),
        FleetProcess(mosquitto_url, tmp_path / "fleet", stations=stations, evses=evses, speed=30),
    ):  # fmt: skip
        cert = data_dir / "tls" / "cert.pem"
        wait_until(cert.exists, "the self-signed certificate")
        api = Api(http_port, https_port, cert)

        def evse_ids() -> list[str]:
            status, body = api.get("/api/v1/stations", secure=False, token="")
            return [e["id"] for s in body["stations"] for e in s["evses"]] if status == 200 else []

        wait_until(lambda: len(evse_ids()) == stations * evses, "400 EVSEs", timeout=240)
        logins_path = data_dir / "demo-logins.json"
        logins = wait_until(
            lambda: json.loads(logins_path.read_text()) if logins_path.exists() else None,
            "demo-logins.json",
        )
        stack = WebStack(
            http_url=f"http://127.0.0.1:{http_port}",
            https_url=f"https://127.0.0.1:{https_port}",
            api=api,
            data_dir=data_dir,
            logins=logins,
            stations=stations,
            evses_per_station=evses,
        )
        api.token = _operator_token(stack)
        chosen = [e for e in evse_ids() if e.endswith(".1")][::2]
        with ThreadPoolExecutor(max_workers=8) as pool:
            answers = list(pool.map(lambda e: api.post(f"/api/v1/evses/{e}/start", {}), chosen))
        assert any(status in (200, 201) for status, _ in answers), answers[:3]
        board = Dashboard(chromium, stack)
        page = board.page
        expect(page.get_by_test_id("totals")).to_contain_text(re.compile(r"[1-9]\d* Charging"))
        page.locator('th[data-col="power"]').get_by_role("button").click()
        page.locator('th[data-col="power"]').get_by_role("button").click()
        expect(board.rows().first.get_by_test_id("status")).to_have_text("Charging", timeout=LIVE)
        chart = page.get_by_test_id("power-chart")
        expect(chart).to_have_attribute("aria-label", re.compile(r"now [1-9]"), timeout=LIVE)
        Path(out).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(out) / "dashboard.png"), animations="disabled")
        board.watch.assert_clean()
