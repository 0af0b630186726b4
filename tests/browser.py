"""Browser test helpers (shared by the driver-app and dashboard tests).

- :func:`launch_chromium`: Debian's Chromium driven by Playwright (skips, with the reason,
  when Chromium or the ``playwright`` package is missing; CI turns that skip into a failure).
- :func:`new_page`: a context that trusts the self-signed certificate, at phone size
  (390x844, touch) or desktop size (1440x900), with geolocation granted at given coordinates.
- :class:`ConsoleWatch`: collects console errors and uncaught exceptions; tests end with
  ``watch.assert_clean()``.
- :func:`axe_violations`: runs axe-core (vendored in ``tests/vendor/axe-core``) in a page and
  returns its violations at or above an impact (default: serious and critical).
- :func:`save_screenshot`: PNGs into ``$SMARTCHARGE_SCREENSHOTS`` or ``<pytest tmp>/screenshots``.
- The ``web_stack`` fixture: Mosquitto, ``smartcharge csms --demo-users`` (HTTP + HTTPS) and a
  simulated fleet, with the URLs and demo logins. A test module uses the fixtures by
  naming them: ``chromium = browser.chromium`` (and ``playwright_sync``, ``web_stack``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from gateway.broker_probe import free_port as _free_port
from tests.driver_client import Api, csms_process, wait_until
from tests.support import FleetProcess

__all__ = [
    "BOLOGNA",
    "DESKTOP",
    "PHONE",
    "ConsoleWatch",
    "WebStack",
    "axe_violations",
    "chromium",
    "chromium_path",
    "launch_chromium",
    "new_page",
    "playwright_sync",
    "save_screenshot",
    "web_stack",
]

BOLOGNA = (44.4949, 11.3426)
"""The simulated fleet's default centre (``simulator.fleet_config.DEFAULT_CENTRE``)."""

PHONE: dict[str, Any] = {
    "viewport": {"width": 390, "height": 844},
    "device_scale_factor": 2,
    "is_mobile": True,
    "has_touch": True,
}
DESKTOP: dict[str, Any] = {"viewport": {"width": 1440, "height": 900}, "device_scale_factor": 1}

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    # the stack's certificate is self-signed: without this the service worker's script fetch
    # fails ("An SSL certificate error occurred when fetching the script") even though the
    # context ignores HTTPS errors for pages
    "--ignore-certificate-errors",
]

SCREENSHOTS_ENV = "SMARTCHARGE_SCREENSHOTS"
_screenshot_dir: Path | None = None


def chromium_path() -> str | None:
    if Path("/usr/bin/chromium").exists():
        return "/usr/bin/chromium"
    return shutil.which("chromium") or shutil.which("chromium-browser")


def launch_chromium(playwright: Any) -> Any:
    """A headless Chromium (the system's: Playwright's own download is not needed)."""
    path = chromium_path()
    if path is None:
        pytest.skip("Chromium not found: apt-get install chromium")
    return playwright.chromium.launch(executable_path=path, headless=True, args=CHROMIUM_ARGS)


@pytest.fixture
def playwright_sync() -> Iterator[Any]:
    """Playwright's sync API (skips when the package is missing)."""
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="the playwright package is missing: pip install playwright"
    )
    with sync_api.sync_playwright() as pw:
        yield pw


@pytest.fixture
def chromium(playwright_sync: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A headless Chromium; screenshots go under pytest's base temp directory."""
    global _screenshot_dir
    _screenshot_dir = tmp_path_factory.getbasetemp() / "screenshots"
    browser = launch_chromium(playwright_sync)
    try:
        yield browser
    finally:
        browser.close()


def new_page(
    browser: Any,
    *,
    size: str = "phone",
    position: tuple[float, float] | None = BOLOGNA,
    **extra: Any,
) -> Any:
    """A page in a fresh context (its own storage), trusting the self-signed certificate."""
    options: dict[str, Any] = dict(PHONE if size == "phone" else DESKTOP)
    options.update(ignore_https_errors=True, locale="en-GB", timezone_id="Europe/Rome")
    if position is not None:
        options.update(
            geolocation={"latitude": position[0], "longitude": position[1]},
            permissions=["geolocation"],
        )
    options.update(extra)
    context = browser.new_context(**options)
    context.set_default_timeout(15_000)
    return context.new_page()


@dataclass
class ConsoleWatch:
    """Console errors and uncaught exceptions of a page; some may be expected (``allow``)."""

    errors: list[str] = field(default_factory=list)
    allowed: list[re.Pattern[str]] = field(default_factory=list)

    @classmethod
    def attach(cls, page: Any) -> ConsoleWatch:
        watch = cls()

        def on_console(message: Any) -> None:
            if message.type == "error":
                watch.errors.append(f"console: {message.text}")

        page.on("console", on_console)
        page.on("pageerror", lambda exc: watch.errors.append(f"uncaught: {exc}"))
        return watch

    def allow(self, pattern: str) -> None:
        """Errors matching ``pattern`` are expected (e.g. a 409 the test provokes)."""
        self.allowed.append(re.compile(pattern))

    def unexpected(self) -> list[str]:
        return [e for e in self.errors if not any(p.search(e) for p in self.allowed)]

    def assert_clean(self) -> None:
        found = self.unexpected()
        assert not found, "the page logged errors:\n" + "\n".join(found)


AXE_JS = Path(__file__).parent / "vendor" / "axe-core" / "axe.min.js"
IMPACTS = ("minor", "moderate", "serious", "critical")


def axe_violations(page: Any, *, least: str = "serious") -> list[dict[str, Any]]:
    """axe-core's violations on the page as it is now, of impact ``least`` or worse.

    The script is evaluated through the DevTools protocol, so the page's
    Content-Security-Policy (``script-src 'self'``) does not need loosening for it. Each
    violation: ``id``, ``impact``, ``help`` and the CSS targets of up to five nodes."""
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.evaluate(AXE_JS.read_text(encoding="utf-8"))
    found: list[dict[str, Any]] = page.evaluate(
        """async () => {
            const result = await window.axe.run(document, {resultTypes: ['violations']});
            return result.violations.map(v => ({
                id: v.id, impact: v.impact, help: v.help,
                targets: v.nodes.slice(0, 5).map(n => n.target.join(' ')),
            }));
        }"""
    )
    floor = IMPACTS.index(least)
    return [v for v in found if v["impact"] in IMPACTS[floor:]]


def screenshot_dir() -> Path:
    configured = os.environ.get(SCREENSHOTS_ENV)
    path = Path(configured) if configured else _screenshot_dir
    if path is None:
        path = Path.cwd() / "screenshots"
    path.mkdir(parents=True, exist_ok=True)
    return path


def save_screenshot(page: Any, name: str, *, full_page: bool = False) -> Path:
    """Save ``<name>.png`` of the page; returns its path."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "screenshot"
    path = screenshot_dir() / f"{safe}.png"
    page.screenshot(path=str(path), full_page=full_page, animations="disabled", caret="initial")
    return path


# -- the whole stack --------------------------------------------------------------------------


@dataclass(frozen=True)
class WebStack:
    http_url: str
    https_url: str
    api: Api
    data_dir: Path
    logins: dict[str, dict[str, str]]
    stations: int
    evses_per_station: int

    @property
    def app_url(self) -> str:
        return f"{self.https_url}/app"

    @property
    def dashboard_url(self) -> str:
        return f"{self.https_url}/dashboard"

    @property
    def driver(self) -> dict[str, str]:
        return self.logins["driver"]

    @property
    def operator(self) -> dict[str, str]:
        return self.logins["operator"]


@pytest.fixture
def web_stack(mosquitto_url: str, tmp_path: Path) -> Iterator[WebStack]:
    """Mosquitto + ``smartcharge csms --demo-users`` + 6 stations x 2 EVSEs at speed 60."""
    stations, evses = 6, 2
    http_port, https_port = _free_port(), _free_port()
    data_dir = tmp_path / "csms"
    with (
        csms_process(
            mosquitto_url,
            data_dir,
            http_port,
            https_port,
            tmp_path / "csms.log",
            # no tile server is reachable from the tests: the maps show the stations only
            extra=("--demo-users", "--map-tiles", "none"),
        ),
        FleetProcess(mosquitto_url, tmp_path / "fleet", stations=stations, evses=evses, speed=60),
    ):
        cert = data_dir / "tls" / "cert.pem"
        wait_until(cert.exists, "the self-signed certificate")
        api = Api(http_port, https_port, cert)

        def all_available() -> bool:
            status, body = api.get("/api/v1/stations", secure=False)
            found = [e for s in body["stations"] for e in s["evses"]] if status == 200 else []
            return len(found) == stations * evses and all(e["status"] == "Available" for e in found)

        wait_until(all_available, f"{stations * evses} EVSEs Available", timeout=60)
        logins_path = data_dir / "demo-logins.json"
        logins = wait_until(
            lambda: json.loads(logins_path.read_text()) if logins_path.exists() else None,
            "demo-logins.json",
        )
        yield WebStack(
            http_url=f"http://127.0.0.1:{http_port}",
            https_url=f"https://127.0.0.1:{https_port}",
            api=api,
            data_dir=data_dir,
            logins=logins,
            stations=stations,
            evses_per_station=evses,
        )
