"""Security headers (gateway/headers.py) and the instance's own URLs in /openapi.json: a strict
CSP and no framing on every page, nosniff everywhere, HSTS on every HTTPS response and only
there, no-store on token answers; the pages keep to their CSP (no inline script or style)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import falcon.testing
import pytest

from actors.system import CsmsConfig, CsmsSystem
from gateway.app import create_app
from gateway.static import STATIC_ROOT
from tests.account_support import PASSWORD, Gateway, gateway_app

pytestmark = pytest.mark.timeout(60)

PAGES = ("/app", "/dashboard", "/static/app/index.html", "/static/dashboard/index.html")
HTTPS = "https://127.0.0.1:9443"


@pytest.fixture
def client() -> falcon.testing.TestClient:
    return falcon.testing.TestClient(create_app(CsmsSystem(CsmsConfig()), https_base=HTTPS))


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[Gateway]:
    with gateway_app(tmp_path / "csms") as gw:
        yield gw


def csp(result: falcon.testing.Result) -> dict[str, str]:
    header = result.headers.get("Content-Security-Policy", "")
    return dict((part.strip() + " ").split(" ", 1) for part in header.split(";") if part.strip())


@pytest.mark.parametrize("path", PAGES)
def test_every_page_has_a_strict_csp_and_cannot_be_framed(
    client: falcon.testing.TestClient, path: str
) -> None:
    page = client.simulate_get(path, protocol="https")
    assert page.status_code == 200
    assert page.headers["Content-Type"].startswith("text/html")
    policy = csp(page)
    assert policy["frame-ancestors"].strip() == "'none'"
    assert policy["default-src"].strip() == "'self'"
    for directive in ("script-src", "style-src"):
        assert policy[directive].strip() == "'self'", policy
    assert "unsafe" not in page.headers["Content-Security-Policy"]
    assert page.headers["X-Frame-Options"] == "DENY"
    assert page.headers["X-Content-Type-Options"] == "nosniff"


def test_a_revalidated_page_keeps_its_own_csp(client: falcon.testing.TestClient) -> None:
    page = client.simulate_get("/dashboard", protocol="https")
    again = client.simulate_get(
        "/dashboard", protocol="https", headers={"If-None-Match": page.headers["ETag"]}
    )
    assert again.status_code == 304
    # A 304's headers replace the cached page's: the API's "default-src 'none'" would break it.
    assert "Content-Security-Policy" not in again.headers
    assert again.headers["X-Frame-Options"] == "DENY"


@pytest.mark.parametrize("path", ["/api/v1/stations", "/healthz", "/openapi.json", "/nope"])
def test_api_answers_and_errors_load_nothing_and_cannot_be_framed(
    client: falcon.testing.TestClient, path: str
) -> None:
    result = client.simulate_get(path, protocol="https")
    policy = csp(result)
    assert policy["default-src"].strip() == "'none'"
    assert policy["frame-ancestors"].strip() == "'none'"
    assert result.headers["X-Frame-Options"] == "DENY"
    assert result.headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize("path", ["/app", "/dashboard", "/api/v1/stations", "/nope"])
def test_every_https_response_has_hsts_and_plain_http_none(
    client: falcon.testing.TestClient, path: str
) -> None:
    secure = client.simulate_get(path, protocol="https")
    assert secure.headers["Strict-Transport-Security"].startswith("max-age=")
    assert int(secure.headers["Strict-Transport-Security"].split("=")[1]) >= 15552000
    plain = client.simulate_get(path, protocol="http")
    assert "Strict-Transport-Security" not in plain.headers


@pytest.mark.needs_db
def test_token_answers_are_never_stored(gateway: Gateway) -> None:
    registered = gateway.post("register", {"email": "ada@example.com", "password": PASSWORD})
    login = gateway.login("ada@example.com", PASSWORD, "10.0.0.1")
    refreshed = gateway.post("refresh", {"refresh_token": login.json["refresh_token"]})
    refused = gateway.login("ada@example.com", "wrong password!", "10.0.0.1")
    for result in (registered, login, refreshed, refused):
        assert result.headers["Cache-Control"] == "no-store", result.json
        assert result.headers["Pragma"] == "no-cache"
    assert (registered.status_code, login.status_code, refreshed.status_code) == (201, 200, 200)


@pytest.mark.parametrize("page", sorted(STATIC_ROOT.glob("*/*.html")), ids=lambda p: p.parent.name)
def test_the_pages_have_no_inline_script_or_style_for_the_csp_to_block(page: Path) -> None:
    html = page.read_text()
    assert re.findall(r"<script\b[^>]*>", html), "a page without its script?"
    for tag in re.findall(r"<script\b[^>]*>", html):
        assert "src=" in tag, tag
    assert not re.search(r"<style\b|\sstyle=|\son[a-z]+=|javascript:", html, re.IGNORECASE)


def test_openapi_names_the_instances_configured_urls() -> None:
    app = create_app(CsmsSystem(CsmsConfig()), http_base="http://127.0.0.1:9080", https_base=HTTPS)
    document = falcon.testing.TestClient(app).simulate_get("/openapi.json").json
    assert [s["url"] for s in document["servers"]] == ["http://127.0.0.1:9080", HTTPS]
    login = document["paths"]["/api/v1/auth/login"]["post"]
    assert [s["url"] for s in login["servers"]] == [HTTPS]
    assert "8080" not in str(document["servers"])
    assert "8443" not in str(login)


def test_openapi_without_configured_urls_names_the_requests_own_origin() -> None:
    client = falcon.testing.TestClient(create_app(CsmsSystem(CsmsConfig())))
    document = client.simulate_get("/openapi.json", host="csms.example.org:7000").json
    assert [s["url"] for s in document["servers"]] == ["http://csms.example.org:7000"]
