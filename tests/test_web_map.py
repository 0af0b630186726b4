"""The station map of both UIs (Leaflet + Leaflet.markercluster, vendored): 200 stations are
clustered and add up, a cluster splits when clicked, a pin opens the right station, the
driver's popup offers a ``geo:`` Navigate link, the pages say when tiles are unavailable (no
tile server is reachable here), and axe-core finds nothing serious on either map. The tile
setting (``--map-tiles``) is checked on the command line and reaches the pages and their CSP.

Screenshots: ``SMARTCHARGE_SCREENSHOTS=docs/screenshots pytest tests/test_web_map.py``
refreshes ``dashboard-map.png`` and ``app-map.png``.
"""

from __future__ import annotations

import http.client
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import falcon.testing
import pytest

from actors.system import CsmsConfig, CsmsSystem
from gateway.app import create_app
from gateway.map_tiles import DEFAULT_TILES, MapTiles, parse_map_tiles
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

pytestmark = pytest.mark.timeout(300)

STATIONS, EVSES = 200, 2
TILES_UNAVAILABLE = "Map tiles unavailable — showing stations only"
TILE_ERRORS = r"Failed to load resource: net::ERR_"  # the unreachable tile server's refusals

MAP_COUNT = """() => {
    const box = document.querySelector('[data-testid="map"]');
    const clusters = [...box.querySelectorAll('[data-testid="map-cluster"]')];
    const pins = box.querySelectorAll('[data-testid="map-marker"]').length;
    return {clusters: clusters.length, pins,
            total: clusters.reduce((n, c) => n + Number(c.dataset.count), 0) + pins};
}"""


def _assert_map_accessible(page: Any) -> None:
    """axe-core (serious and critical) on the map's part of the page: the map, its legend,
    notice, skip link and popup (the rest of each page has its own tests)."""
    axe_violations(page)  # loads axe-core into the page
    # a popup fades in: judge its contrast once it is fully shown
    page.wait_for_function(
        """() => [...document.querySelectorAll('.leaflet-popup')]
            .every((p) => getComputedStyle(p).opacity === '1')"""
    )
    found = page.evaluate(
        """async () => {
            const box = document.querySelector('[data-testid="map"]');
            const part = box.closest('section, .card') || box.parentElement;
            const result = await window.axe.run(part, {resultTypes: ['violations']});
            return result.violations
                .filter(v => v.impact === 'serious' || v.impact === 'critical')
                .map(v => ({id: v.id, impact: v.impact,
                            targets: v.nodes.slice(0, 5).map(n => n.target.join(' '))}));
        }"""
    )
    assert found == [], json.dumps(found, indent=1)


def _expect() -> Any:
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    return sync_api.expect


# -- the tile setting: command line, pages, CSP (no browser) -----------------------------------


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("ftp://tiles.example/{z}/{x}/{y}.png", "https:// or http://"),
        ("javascript:alert(1)//{z}{x}{y}", "https:// or http://"),
        ("https://tiles.example/{z}/{x}.png", "{z}, {x} and {y}"),
        ("https://user:pw@tiles.example/{z}/{x}/{y}.png", "user or password"),
        ("https://{s}/{z}/{x}/{y}.png", "plain host"),
        ('https://tiles.example/{z}/{x}/{y}.png"><script>', "quotes"),
        ("https://tiles.example/{z}/{x}/{y}/{evil}.png", "unknown placeholders"),
        ("https://tiles.example/" + "a" * 600 + "/{z}/{x}/{y}.png", "longer than"),
    ],
)
def test_a_bad_tile_url_is_refused(url: str, why: str) -> None:
    with pytest.raises(ValueError, match=why.replace("{", r"\{").replace("}", r"\}")):
        parse_map_tiles(url)


@pytest.mark.parametrize("command", ["csms", "gateway", "up"])
def test_the_command_line_refuses_a_bad_tile_url_before_starting(
    command: str, tmp_path: Path
) -> None:
    done = subprocess.run(
        [
            *(sys.executable, "-m", "gateway.cli", command),
            *("--data-dir", str(tmp_path / "d")),
            *("--map-tiles", "https://tiles.example/{z}/{x}.png"),
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0
    assert f"smartcharge {command}: --map-tiles: the tile URL must contain" in done.stderr
    assert not (tmp_path / "d").exists(), "nothing may start (no data dir, no database)"


def test_the_tile_setting_reaches_the_pages_and_their_csp() -> None:
    tiles = parse_map_tiles("https://tiles.example:8443/osm/{z}/{x}/{y}.png?k=1&v=2", "© Me & Co")
    client = falcon.testing.TestClient(
        create_app(CsmsSystem(CsmsConfig()), https_base="https://127.0.0.1:9443", map_tiles=tiles)
    )
    for path in ("/app", "/dashboard", "/static/app/index.html"):
        page = client.simulate_get(path, protocol="https")
        assert page.status_code == 200
        csp = page.headers["Content-Security-Policy"]
        assert "img-src 'self' data: https://tiles.example:8443;" in csp
        html = page.text
        assert (
            '<meta name="sc-map-tiles" content="https://tiles.example:8443/osm/{z}/{x}/{y}.png'
            '?k=1&amp;v=2">' in html
        )
        assert '<meta name="sc-map-attribution" content="© Me &amp; Co">' in html
    # JSON and files may still load nothing
    api = client.simulate_get("/healthz")
    assert "img-src" not in api.headers["Content-Security-Policy"]

    default = falcon.testing.TestClient(create_app(CsmsSystem(CsmsConfig())))
    page = default.simulate_get("/app")
    assert (
        "img-src 'self' data: https://tile.openstreetmap.org;"
        in page.headers["Content-Security-Policy"]
    )
    assert f'content="{DEFAULT_TILES}"' in page.text
    assert 'content="© OpenStreetMap contributors"' in page.text

    off = falcon.testing.TestClient(
        create_app(CsmsSystem(CsmsConfig()), map_tiles=parse_map_tiles("none"))
    )
    page = off.simulate_get("/dashboard")
    assert "img-src 'self' data:;" in page.headers["Content-Security-Policy"]
    assert '<meta name="sc-map-tiles" content="none">' in page.text
    # a new setting is a new page: its ETag changes
    assert page.headers["ETag"] != default.simulate_get("/dashboard").headers["ETag"]
    assert MapTiles(url=None).origin is None


# -- 200 stations x 2 EVSEs, a tile server that refuses every connection -----------------------


@dataclass(frozen=True)
class BigStack(WebStack):
    dead_port: int = 0
    """The closed local port the tile URL points at."""


@pytest.fixture(scope="module")
def big_stack(
    module_mosquitto_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[BigStack]:
    """``smartcharge csms --demo-users`` and 200 simulated stations x 2 EVSEs; the tile URL
    points at a closed local port, so every tile fails at once (as offline machines do)."""
    tmp = tmp_path_factory.mktemp("bigmap")
    http_port, https_port, dead_port = _free_port(), _free_port(), _free_port()
    data_dir = tmp / "csms"
    tiles = f"https://127.0.0.1:{dead_port}/{{z}}/{{x}}/{{y}}.png"
    with (
        csms_process(
            module_mosquitto_url,
            data_dir,
            http_port,
            https_port,
            tmp / "csms.log",
            extra=("--demo-users", "--map-tiles", tiles, "--map-attribution", "Test tiles"),
        ),
        FleetProcess(module_mosquitto_url, tmp / "fleet", stations=STATIONS, evses=EVSES, speed=1),
    ):
        cert = data_dir / "tls" / "cert.pem"
        wait_until(cert.exists, "the self-signed certificate")
        api = Api(http_port, https_port, cert)

        def all_known() -> bool:
            status, body = api.get("/api/v1/stations", secure=False)
            found = [e for s in body["stations"] for e in s["evses"]] if status == 200 else []
            return len(found) == STATIONS * EVSES

        wait_until(all_known, f"{STATIONS * EVSES} EVSEs known", timeout=180)
        logins_path = data_dir / "demo-logins.json"
        logins = wait_until(
            lambda: json.loads(logins_path.read_text()) if logins_path.exists() else None,
            "demo-logins.json",
        )
        yield BigStack(
            http_url=f"http://127.0.0.1:{http_port}",
            https_url=f"https://127.0.0.1:{https_port}",
            api=api,
            data_dir=data_dir,
            logins=logins,
            stations=STATIONS,
            evses_per_station=EVSES,
            dead_port=dead_port,
        )


def _stations(stack: WebStack) -> dict[str, dict[str, Any]]:
    status, body = stack.api.get("/api/v1/stations", secure=False, token="")
    assert status == 200, body
    return {s["id"]: s for s in body["stations"]}


def _sign_in(page: Any, login: dict[str, str]) -> None:
    page.get_by_test_id("email").fill(login["email"])
    page.get_by_test_id("password").fill(login["password"])
    page.get_by_test_id("login").click()


def _all_on_the_map(page: Any, expected: int) -> dict[str, int]:
    """Wait until the clusters' counts and the single pins add up to ``expected``."""
    page.wait_for_function(f"() => ({MAP_COUNT})().total === {expected}", timeout=30_000)
    counts: dict[str, int] = page.evaluate(MAP_COUNT)
    return counts


SPLIT = """(size) => {
    const counts = [...document.querySelectorAll('[data-testid="map"] [data-testid="map-cluster"]')]
        .map((c) => Number(c.dataset.count));
    const pins = document.querySelectorAll('[data-testid="map"] [data-testid="map-marker"]').length;
    return Math.max(0, ...counts) < size && counts.reduce((a, b) => a + b, 0) + pins >= size;
}"""


def _zoom_into_a_cluster(page: Any) -> None:
    """Click the biggest cluster: the map zooms in and that cluster splits (no cluster as big
    any more, and what shows still holds its stations)."""
    expect = _expect()
    box = page.get_by_test_id("map")
    zoom = int(box.get_attribute("data-zoom"))
    clusters = box.get_by_test_id("map-cluster")
    sizes = [int(c.get_attribute("data-count")) for c in clusters.all()]
    biggest = clusters.nth(sizes.index(max(sizes)))
    biggest.click()
    expect(box).not_to_have_attribute("data-zoom", str(zoom))
    page.wait_for_function(SPLIT, arg=max(sizes), timeout=15_000)


def _open_a_pin(page: Any) -> str:
    """Zoom until single pins show, click one; its station id."""
    box = page.get_by_test_id("map")
    for _ in range(8):
        if box.get_by_test_id("map-marker").count():
            break
        _zoom_into_a_cluster(page)
        page.wait_for_function(f"() => ({MAP_COUNT})().total > 0")
    pin = box.get_by_test_id("map-marker").first
    station_id: str = pin.get_attribute("data-station-id")
    pin.click()
    return station_id


@pytest.mark.integration
@pytest.mark.slow
def test_the_dashboard_map_clusters_200_stations_and_a_pin_opens_its_station(
    big_stack: WebStack,
    chromium: Any,  # noqa: F811
) -> None:
    expect = _expect()
    stations = _stations(big_stack)
    page = new_page(chromium, size="desktop", position=None)
    watch = ConsoleWatch.attach(page)
    watch.allow(TILE_ERRORS)
    page.goto(big_stack.dashboard_url)
    _sign_in(page, big_stack.operator)
    box = page.get_by_test_id("map")
    expect(box).to_have_attribute("data-stations", str(STATIONS), timeout=60_000)

    # at the first zoom the 200 stations are clusters, and the counts add up
    first = _all_on_the_map(page, STATIONS)
    assert first["clusters"] > 0, first
    assert first["pins"] + first["clusters"] < STATIONS, first
    cluster = box.get_by_test_id("map-cluster").first
    expect(cluster).to_have_attribute("aria-label", re.compile("^\\d+ stations, \\d+ EVSEs free"))
    # no tile server: said so, stations still shown
    expect(page.get_by_test_id("map-notice")).to_have_text(TILES_UNAVAILABLE)
    expect(box).to_have_attribute("data-tiles", "unavailable")
    _assert_map_accessible(page)

    # a cluster splits when clicked (_zoom_into_a_cluster waits for that)
    _zoom_into_a_cluster(page)

    # a pin opens its station: the popup names it, the dashboard shows it
    chosen = _open_a_pin(page)
    popup = page.get_by_test_id("map-popup")
    expect(popup).to_have_attribute("data-station-id", chosen)
    expect(popup).to_contain_text(stations[chosen]["name"])
    expect(popup.get_by_test_id("map-popup-meta")).to_contain_text(chosen)
    expect(popup.get_by_test_id("map-popup-page")).to_have_attribute(
        "href", f"/dashboard/station?id={chosen}"
    )
    pin = box.locator(f'[data-testid="map-marker"][data-station-id="{chosen}"]')
    expect(pin).to_have_class(re.compile("is-selected"))
    name = re.escape(stations[chosen]["name"])
    label = re.compile(f"^{name}, (\\d+ of {EVSES} free|offline|out of order)$")
    expect(pin).to_have_attribute("aria-label", label)
    _assert_map_accessible(page)
    save_screenshot(page, "dashboard-map")
    watch.assert_clean()


@pytest.mark.integration
@pytest.mark.slow
def test_the_app_map_clusters_200_stations_and_a_pin_offers_reserve_details_navigate(
    big_stack: WebStack,
    chromium: Any,  # noqa: F811
) -> None:
    expect = _expect()
    stations = _stations(big_stack)
    page = new_page(chromium, size="phone")
    watch = ConsoleWatch.attach(page)
    watch.allow(TILE_ERRORS)
    page.goto(big_stack.app_url)
    _sign_in(page, big_stack.driver)
    page.get_by_test_id("use-location").click()
    expect(page.get_by_test_id("evse-item").first).to_be_visible(timeout=30_000)
    box = page.get_by_test_id("map")
    expect(box).to_have_attribute("data-stations", str(STATIONS), timeout=30_000)
    first = _all_on_the_map(page, STATIONS)
    assert first["clusters"] > 0, first
    expect(page.get_by_test_id("map-notice")).to_have_text(TILES_UNAVAILABLE)
    expect(box.locator(".sc-map-me")).to_have_count(1)
    _assert_map_accessible(page)
    # the whole Nearby page too (its old SVG map had focusable pins in a role=img)
    found = axe_violations(page)
    assert found == [], json.dumps(found, indent=1)

    chosen = _open_a_pin(page)
    popup = page.get_by_test_id("map-popup")
    expect(popup).to_have_attribute("data-station-id", chosen)
    station = stations[chosen]
    expect(popup.get_by_test_id("map-popup-name")).to_have_text(station["name"])
    expect(popup.get_by_test_id("map-popup-meta")).to_have_text(
        re.compile(f"^(\\d+ of {EVSES} free|offline|out of order)$")
    )
    lat, lon = f"{station['lat']:.6f}", f"{station['lon']:.6f}"
    expect(popup.get_by_test_id("map-navigate")).to_have_attribute(
        "href", f"geo:{lat},{lon}?q={lat},{lon}({quote(station['name'], safe='')})"
    )
    directions = popup.get_by_test_id("map-directions")
    expect(directions).to_have_attribute("href", re.compile("^https://www\\.openstreetmap\\.org/"))
    expect(directions).to_have_attribute("rel", "noopener noreferrer")
    _assert_map_accessible(page)
    save_screenshot(page, "app-map")

    # Details: that station's chargers in the list
    popup.get_by_test_id("map-details").click()
    expect(
        page.locator(f'[data-testid="evse-item"][data-station-id="{chosen}"]').first
    ).to_be_visible()
    watch.assert_clean()


@pytest.mark.integration
def test_the_pages_csp_allows_exactly_the_tile_origin(big_stack: BigStack) -> None:
    api = big_stack.api
    conn = http.client.HTTPSConnection("127.0.0.1", api.https_port, context=api.context)
    try:
        conn.request("GET", "/app")
        resp = conn.getresponse()
        page = resp.read().decode()
    finally:
        conn.close()
    assert resp.status == 200
    tiles = f"https://127.0.0.1:{big_stack.dead_port}"
    assert f'<meta name="sc-map-tiles" content="{tiles}/{{z}}/{{x}}/{{y}}.png">' in page
    csp = resp.headers["Content-Security-Policy"]
    img = next(part.strip() for part in csp.split(";") if part.strip().startswith("img-src"))
    assert img == f"img-src 'self' data: {tiles}", csp


# -- 6 stations, tiles off: the notice, the keyboard, the skip link ----------------------------


@pytest.mark.integration
def test_with_tiles_off_the_map_says_so_and_works_by_keyboard(
    web_stack: WebStack,  # noqa: F811
    chromium: Any,  # noqa: F811
) -> None:
    expect = _expect()
    page = new_page(chromium, size="desktop", position=None)
    watch = ConsoleWatch.attach(page)
    page.goto(web_stack.dashboard_url)
    _sign_in(page, web_stack.operator)
    box = page.get_by_test_id("map")
    expect(box).to_have_attribute("data-stations", str(web_stack.stations), timeout=30_000)
    expect(page.get_by_test_id("map-notice")).to_have_text(TILES_UNAVAILABLE)
    assert page.locator(".leaflet-tile").count() == 0  # nothing is fetched

    # Enter on a pin opens its popup, with the focus in it
    _all_on_the_map(page, web_stack.stations)
    if not box.get_by_test_id("map-marker").count():
        _zoom_into_a_cluster(page)
    pin = box.get_by_test_id("map-marker").first
    chosen = pin.get_attribute("data-station-id")
    pin.focus()
    page.keyboard.press("Enter")
    popup = page.get_by_test_id("map-popup")
    expect(popup).to_have_attribute("data-station-id", chosen)
    expect(popup.get_by_test_id("map-popup-show")).to_be_focused()
    page.keyboard.press("Escape")
    expect(popup).to_be_hidden()
    expect(box.locator(f'[data-testid="map-marker"][data-station-id="{chosen}"]')).to_be_focused()

    # "Skip map" jumps past the pins
    skip = page.get_by_test_id("skip-map")
    skip.focus()
    expect(skip).to_be_visible()
    page.keyboard.press("Enter")
    expect(page.locator(f"#{box.get_attribute('id')}-after")).to_be_focused()
    _assert_map_accessible(page)
    watch.assert_clean()


def test_up_hands_the_tile_setting_to_its_csms_and_gateway_children(tmp_path: Path) -> None:
    from gateway.cli import build_parser
    from gateway.up import _server_argv

    tiles = "https://tiles.example/{z}/{x}/{y}.png"
    args = build_parser().parse_args(
        ["up", "--map-tiles", tiles, "--map-attribution", "© Example", "--data-dir", str(tmp_path)]
    )
    for command in ("csms", "gateway"):
        argv = _server_argv(command, args, "mqtt://127.0.0.1:1", tmp_path, [], (1, 2))
        assert argv[argv.index("--map-tiles") + 1] == tiles
        assert argv[argv.index("--map-attribution") + 1] == "© Example"
        child = build_parser().parse_args(argv[3:])
        assert parse_map_tiles(child.map_tiles, child.map_attribution) == MapTiles(
            tiles, "© Example"
        )
