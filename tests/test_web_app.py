"""The driver web app at ``/app``: how its files are served (no browser), and a driver's
journey through it in a real Chromium at phone size against the real stack."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from unittest.mock import MagicMock

import falcon
import falcon.testing
import pytest

from gateway.app import create_app
from gateway.static import STATIC_ROOT, add_static_routes, resolve_static
from tests import browser
from tests.browser import ConsoleWatch, WebStack, new_page, save_screenshot

# the shared browser fixtures, used here by name
playwright_sync = browser.playwright_sync
chromium = browser.chromium
web_stack = browser.web_stack

HTTPS_BASE = "https://127.0.0.1:8443"


# -- serving the files (no browser) -----------------------------------------------------------


@pytest.fixture
def client() -> falcon.testing.TestClient:
    """The real ``create_app`` (public part only); the static files need no CSMS."""
    return falcon.testing.TestClient(create_app(MagicMock(), https_base=HTTPS_BASE))


def https_get(client: falcon.testing.TestClient, path: str, **kw: Any) -> falcon.testing.Result:
    return client.simulate_get(path, protocol="https", **kw)


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/app", "text/html; charset=utf-8"),
        ("/static/app/app.js", "text/javascript; charset=utf-8"),
        ("/static/shared/api.js", "text/javascript; charset=utf-8"),
        ("/static/shared/base.css", "text/css; charset=utf-8"),
        ("/static/app/manifest.webmanifest", "application/manifest+json"),
        ("/static/app/icon.svg", "image/svg+xml"),
        ("/static/app/sw.js", "text/javascript; charset=utf-8"),
    ],
)
def test_each_file_is_served_with_its_content_type(
    client: falcon.testing.TestClient, path: str, content_type: str
) -> None:
    result = https_get(client, path)
    assert result.status_code == 200, result.text
    assert result.headers["content-type"] == content_type
    assert result.headers["x-content-type-options"] == "nosniff"
    assert result.content


def test_the_page_is_revalidated_and_assets_are_cached_briefly(
    client: falcon.testing.TestClient,
) -> None:
    page = https_get(client, "/app")
    assert page.headers["cache-control"] == "no-cache"
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert https_get(client, "/app/").status_code == 200
    asset = https_get(client, "/static/app/app.css")
    assert re.fullmatch(r"public, max-age=\d+", asset.headers["cache-control"])


def test_an_unchanged_file_is_a_304_for_its_etag(client: falcon.testing.TestClient) -> None:
    first = https_get(client, "/static/shared/format.js")
    again = https_get(
        client, "/static/shared/format.js", headers={"If-None-Match": first.headers["etag"]}
    )
    assert again.status_code == 304
    assert not again.content


def test_the_service_worker_may_control_the_app(client: falcon.testing.TestClient) -> None:
    result = https_get(client, "/static/app/sw.js")
    assert result.headers["service-worker-allowed"] == "/app"
    assert result.headers["cache-control"] == "no-cache"


def test_head_is_served_and_writes_are_refused(client: falcon.testing.TestClient) -> None:
    head = client.simulate_head("/static/app/app.js", protocol="https")
    assert head.status_code == 200
    assert not head.content
    post = client.simulate_post("/static/app/app.js", protocol="https")
    assert post.status_code in (403, 405)  # plain-HTTP policy or method: never served
    assert client.simulate_post("/app", protocol="https").status_code == 405


@pytest.mark.parametrize(
    "path",
    [
        "/static/../static.py",
        "/static/app/../../app.py",
        "/static/%2e%2e/app.py",
        "/static/app/%2e%2e/%2e%2e/security.py",
        "/static/app/..%2F..%2Fapp.py",
        "/static/app/..%5C..%5Capp.py",
        "/static//etc/passwd",
        "/static/app/index.html%00.js",
        "/static/app/.hidden.js",
        "/static/app/nothing-here.js",
        "/static/app",
        "/static/",
        "/static/app/app.py",
    ],
)
def test_paths_outside_the_static_files_are_404(
    client: falcon.testing.TestClient, path: str
) -> None:
    result = https_get(client, path)
    assert result.status_code == 404, path
    assert result.json["reason"]


def test_a_symlink_out_of_the_static_directory_is_not_followed(tmp_path: Path) -> None:
    root = tmp_path / "static"
    (root / "app").mkdir(parents=True)
    secret = tmp_path / "secret.js"
    secret.write_text("secret")
    (root / "app" / "leak.js").symlink_to(secret)
    (root / "app" / "ok.js").write_text("ok")
    assert resolve_static(root, "app/leak.js") is None
    assert resolve_static(root, "app/ok.js") == (root / "app" / "ok.js").resolve()
    app = falcon.App()
    add_static_routes(app, None, root=root)
    client = falcon.testing.TestClient(app)
    assert client.simulate_get("/static/app/leak.js").status_code == 404
    assert client.simulate_get("/static/app/ok.js").text == "ok"


def test_pages_on_plain_http_redirect_to_https(client: falcon.testing.TestClient) -> None:
    for page in ("/app", "/dashboard"):
        result = client.simulate_get(page, query_string="from=link")
        assert result.status_code in (302, 307)
        assert result.headers["location"] == f"{HTTPS_BASE}{page}?from=link"
    # assets stay readable over HTTP (they are public); the API's policy is unchanged
    assert client.simulate_get("/static/shared/base.css").status_code == 200


def test_pages_are_served_over_http_when_there_is_no_https(tmp_path: Path) -> None:
    root = tmp_path / "static"
    for page in ("app", "dashboard"):
        (root / page).mkdir(parents=True)
        (root / page / "index.html").write_text(f"<!doctype html><title>{page}</title>")
    app = falcon.App()
    add_static_routes(app, None, root=root)
    client = falcon.testing.TestClient(app)
    assert "<title>dashboard</title>" in client.simulate_get("/dashboard").text
    assert client.simulate_get("/app").status_code == 200
    assert client.simulate_get("/apple").status_code == 404


def test_the_app_shell_names_only_files_that_exist() -> None:
    sw = (STATIC_ROOT / "app" / "sw.js").read_text()
    shell = re.findall(r'"(/static/[^"]+)"', sw)
    assert shell
    for path in shell:
        assert resolve_static(STATIC_ROOT, path.removeprefix("/static/")), path


# -- the driver's journey in Chromium ---------------------------------------------------------

A11Y_CHECK = """() => {
  const visible = (el) => !!(el.offsetWidth || el.offsetHeight || el.getClientRects().length);
  const problems = [];
  for (const input of document.querySelectorAll("input, select, textarea")) {
    if (!visible(input) || input.type === "hidden") continue;
    const named = input.labels?.length || input.getAttribute("aria-label")
      || input.getAttribute("aria-labelledby");
    if (!named) problems.push(`input without a label: #${input.id || input.name}`);
  }
  for (const button of document.querySelectorAll("button, [role=button]")) {
    if (!visible(button)) continue;
    const name = (button.getAttribute("aria-label") || button.textContent || "").trim();
    if (!name) problems.push(`button without a name: ${button.outerHTML.slice(0, 80)}`);
  }
  for (const img of document.querySelectorAll("img")) {
    if (!img.hasAttribute("alt")) problems.push(`img without alt: ${img.src}`);
  }
  if (!document.documentElement.lang) problems.push("no lang on <html>");
  return problems;
}"""


def assert_accessible(page: Any) -> None:
    problems = page.evaluate(A11Y_CHECK)
    assert not problems, problems


def sign_up(page: Any, email: str, password: str = "correct horse battery") -> None:
    page.get_by_test_id("email").fill(email)
    page.get_by_test_id("password").fill(password)
    page.get_by_test_id("register").click()
    page.locator(".tabbar").wait_for(state="visible")


def available_item(page: Any, *, other_than: str | None = None) -> Any:
    items = page.locator('[data-testid="evse-item"][data-status="Available"]')
    if other_than is not None:
        items = items.locator(f'xpath=self::*[not(@data-evse-id="{other_than}")]')
    items.first.wait_for(state="visible")
    return items.first


def dismiss_toasts(page: Any) -> None:
    """Close the toasts so a screenshot shows the screen itself."""
    for close in page.locator('[data-testid="toast"] button').all():
        if close.is_visible():
            close.click()
    page.locator('[data-testid="toast"]').first.wait_for(state="detached")


def number_in(page: Any, testid: str) -> float:
    text = page.get_by_test_id(testid).inner_text()
    match = re.search(r"\d+(?:[.,]\d+)?", text)
    assert match, f"no number in {testid}: {text!r}"
    return float(match.group().replace(",", "."))


@pytest.mark.integration
@pytest.mark.timeout(240)
def test_a_driver_finds_reserves_charges_and_finds_the_session_in_history(
    web_stack: WebStack, chromium: Any
) -> None:
    from playwright.sync_api import expect

    page = new_page(chromium, size="phone")
    watch = ConsoleWatch.attach(page)
    page.goto(web_stack.app_url)
    expect(page.get_by_test_id("email")).to_be_visible()
    assert_accessible(page)
    save_screenshot(page, "app-login")

    sign_up(page, "rider@example.com")

    # nearby: the browser's position, a list and a map
    page.get_by_test_id("use-location").click()
    expect(page.get_by_test_id("evse-item").first).to_be_visible()
    expect(page.get_by_test_id("lat")).to_have_value(re.compile(r"^44\.49"))
    assert page.get_by_test_id("evse-item").count() >= 6
    map_box = page.get_by_test_id("map")
    expect(map_box).to_have_attribute("data-stations", str(web_stack.stations))
    expect(map_box.locator(".sc-map-me")).to_have_count(1)
    assert_accessible(page)
    dismiss_toasts(page)
    save_screenshot(page, "app-nearby")

    # a typed position works too
    page.get_by_test_id("lat").fill("44.5")
    page.get_by_test_id("lon").fill("11.35")
    page.get_by_test_id("search").click()
    expect(page.get_by_test_id("lat")).to_have_value("44.5")
    expect(page.get_by_test_id("evse-item").first).to_be_visible()

    # reserve: the countdown ticks, then cancel
    item = available_item(page)
    reserved = item.get_attribute("data-evse-id")
    item.get_by_test_id("reserve").click()
    countdown = page.get_by_test_id("countdown")
    expect(countdown).to_have_text(re.compile(r"^1[45]:\d\d$"))
    first = countdown.inner_text()
    page.wait_for_function(
        "(first) => document.querySelector('[data-testid=countdown]').textContent !== first",
        arg=first,
        timeout=5000,
    )
    expect(page.get_by_test_id("toast").first).to_be_visible()
    expect(page.get_by_test_id("reservation-status")).to_contain_text("Held for you")
    assert_accessible(page)
    save_screenshot(page, "app-reservation")
    page.get_by_test_id("cancel-reservation").click()
    expect(page.get_by_test_id("reservation-status")).to_contain_text("cancelled")
    expect(countdown).to_be_hidden()

    # charge: SoC rises live, then stop
    page.locator(
        f'[data-testid="evse-item"][data-evse-id="{reserved}"][data-status="Available"]'
    ).wait_for()
    item = available_item(page)
    charged = item.get_attribute("data-evse-id")
    item.get_by_test_id("start").click()
    view = page.get_by_test_id("charging")
    expect(view).to_be_visible()
    expect(page.get_by_test_id("soc")).to_have_text(re.compile(r"\d"), timeout=30_000)
    expect(page.get_by_test_id("kw")).not_to_have_text(
        re.compile(r"^0\.0 kW$|^\u2013$"), timeout=30_000
    )
    soc = number_in(page, "soc")
    page.wait_for_function(
        """(before) => {
          const m = document.querySelector('[data-testid=soc]').textContent.match(/\\d+(\\.\\d+)?/);
          return m && parseFloat(m[0]) > before;
        }""",
        arg=soc,
        timeout=60_000,
    )
    expect(page.get_by_test_id("elapsed")).to_have_text(re.compile(r"^\d+:\d\d"))
    expect(page.get_by_test_id("kwh")).to_have_text(re.compile(r"kWh$"))
    assert_accessible(page)
    dismiss_toasts(page)
    save_screenshot(page, "app-charging")
    page.get_by_test_id("stop").click()
    expect(page.get_by_test_id("stop")).to_be_hidden(timeout=30_000)
    expect(view).to_have_attribute("data-state", "finished")

    # history and notifications
    page.locator(".tabbar [data-tab=history]").click()
    session = page.get_by_test_id("history-item").filter(has_text=charged or "")
    expect(session.first).to_be_visible(timeout=30_000)
    expect(session.first).to_contain_text("kWh")
    expect(session.first).to_contain_text("Stopped by you", timeout=30_000)
    assert_accessible(page)
    dismiss_toasts(page)
    save_screenshot(page, "app-history")
    page.locator(".tabbar [data-tab=alerts]").click()
    expect(page.get_by_test_id("notification-item").first).to_be_visible()
    assert page.get_by_test_id("notification-item").count() >= 2
    assert_accessible(page)
    save_screenshot(page, "app-alerts")

    watch.assert_clean()


@pytest.mark.integration
@pytest.mark.timeout(240)
def test_an_interrupted_reservation_is_shown_with_its_reason_without_a_reload(
    web_stack: WebStack, chromium: Any
) -> None:
    from playwright.sync_api import expect

    page = new_page(chromium, size="phone")
    watch = ConsoleWatch.attach(page)
    watch.allow(r"status of 401")  # the wrong password below, on purpose
    page.goto(web_stack.app_url)

    # a wrong password shows the API's reason
    page.get_by_test_id("email").fill(web_stack.driver["email"])
    page.get_by_test_id("password").fill("not the password at all")
    page.get_by_test_id("login").click()
    expect(page.locator("#auth-error")).to_be_visible()
    assert page.locator("#auth-error").inner_text().strip()

    page.get_by_test_id("password").fill(web_stack.driver["password"])
    page.get_by_test_id("login").click()
    item = available_item(page)
    evse_id = item.get_attribute("data-evse-id")
    item.get_by_test_id("reserve").click()
    expect(page.get_by_test_id("countdown")).to_be_visible()
    page.wait_for_function("() => document.querySelector('#live-state').dataset.state === 'open'")

    api = web_stack.api
    status, tokens = api.post("/api/v1/auth/login", web_stack.operator)
    assert status == 200, tokens
    status, body = api.call(
        "PUT",
        f"/api/v1/evses/{evse_id}/maintenance",
        {"enabled": True},
        token=tokens["access_token"],
    )
    assert status == 200, body

    status_text = page.get_by_test_id("reservation-status")
    expect(status_text).to_contain_text("interrupted", timeout=30_000)
    expect(status_text).to_contain_text("maintenance")
    expect(page.locator("#reservation")).to_have_attribute("data-state", "interrupted")
    expect(page.get_by_test_id("toast").filter(has_text="interrupted").first).to_be_visible()
    save_screenshot(page, "app-reservation-interrupted")
    watch.assert_clean()
