"""The browser pages: the driver app at ``/app``, the operator dashboard at ``/dashboard``,
and their files under ``/static/...`` (``gateway/static/``), same origin as the API.

Served as Falcon *sinks*, not routes: they are not API operations (``/openapi.json`` does not
list them, and ``tests/test_openapi.py`` checks that every route is documented).

- Only regular files below ``gateway/static/`` with a known extension are served; any path
  with a ``..``, hidden or empty segment, a backslash or a NUL, or that resolves outside the
  directory (a symlink), is a 404.
- Content types are explicit (``text/javascript`` for ES modules, ``application/manifest+json``
  for the web app manifest), with ``nosniff``; pages and the service worker are revalidated on
  every load (``no-cache``), other assets cached briefly; pages get the map's tile setting
  filled into their ``<meta name="sc-map-...">`` placeholders (``gateway.map_tiles``); the
  security headers (CSP, framing, HSTS) come from :mod:`gateway.headers`; ``ETag`` +
  ``If-None-Match`` give 304s.
- The service worker (``/static/app/sw.js``) may control ``/app`` (``Service-Worker-Allowed``).
- On the plain-HTTP port, when an HTTPS URL is known, the pages redirect there: they sign in
  and write, which the API only accepts over HTTPS, and everything must stay same-origin.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import falcon

from gateway.map_tiles import MapTiles

__all__ = ["CONTENT_TYPES", "PAGES", "STATIC_ROOT", "add_static_routes"]

STATIC_ROOT = Path(__file__).resolve().parent / "static"

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".webmanifest": "application/manifest+json",
    ".json": "application/json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".txt": "text/plain; charset=utf-8",
    ".woff2": "font/woff2",
}

PAGES = ("app", "dashboard")
"""``/<page>`` serves ``gateway/static/<page>/index.html``."""
OPERATOR_PAGES = ("sessions", "users", "station", "sites")
"""``/dashboard/<page>`` serves ``gateway/static/dashboard/<page>.html``."""

NO_CACHE = "no-cache"
ASSET_CACHE = "public, max-age=300"

SERVICE_WORKER_SCOPES = {"app/sw.js": "/app"}

_SEGMENT = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


def resolve_static(root: Path, relative: str) -> Path | None:
    """The file ``relative`` names below ``root``, or ``None`` if it is not one to serve."""
    if not relative or "\\" in relative or "\x00" in relative:
        return None
    segments = relative.split("/")
    if any(not _SEGMENT.match(s) or ".." in s for s in segments):
        return None
    if Path(segments[-1]).suffix.lower() not in CONTENT_TYPES:
        return None
    base = root.resolve()
    try:
        candidate = (base / Path(*segments)).resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    if not candidate.is_relative_to(base) or not candidate.is_file():
        return None
    return candidate


def _send_file(
    req: falcon.Request,
    resp: falcon.Response,
    path: Path,
    cache: str,
    tiles: MapTiles | None = None,
) -> None:
    if req.method not in ("GET", "HEAD"):
        raise falcon.HTTPMethodNotAllowed(["GET", "HEAD"])
    if tiles is not None and path.suffix.lower() == ".html":
        _send_page(req, resp, path, cache, tiles)
        return
    stat = path.stat()
    etag = hashlib.sha256(f"{path}:{stat.st_mtime_ns}:{stat.st_size}".encode()).hexdigest()[:20]
    resp.etag = etag
    resp.set_header("Cache-Control", cache)
    resp.set_header("X-Content-Type-Options", "nosniff")
    if etag in (req.if_none_match or ()):
        resp.status = falcon.HTTP_304
        resp.content_type = None  # a 304 has no body, so no type
        return
    resp.content_type = CONTENT_TYPES[path.suffix.lower()]
    if req.method == "HEAD":
        resp.content_length = stat.st_size
        return
    resp.data = path.read_bytes()


def _send_page(
    req: falcon.Request, resp: falcon.Response, path: Path, cache: str, tiles: MapTiles
) -> None:
    """An HTML page with the map's tile setting filled into its ``<meta>`` placeholders
    (``gateway.map_tiles``); its ETag is of the filled page, so a new setting is a new page."""
    data = tiles.fill(path.read_bytes())
    etag = hashlib.sha256(data).hexdigest()[:20]
    resp.etag = etag
    resp.set_header("Cache-Control", cache)
    resp.set_header("X-Content-Type-Options", "nosniff")
    if etag in (req.if_none_match or ()):
        resp.status = falcon.HTTP_304
        resp.content_type = None
        return
    resp.content_type = CONTENT_TYPES[".html"]
    if req.method == "HEAD":
        resp.content_length = len(data)
        return
    resp.data = data


class StaticFiles:
    """``/static/<path>``: a file of ``gateway/static/``."""

    def __init__(self, root: Path = STATIC_ROOT, tiles: MapTiles | None = None) -> None:
        self._root = root
        self._tiles = tiles or MapTiles()

    def __call__(self, req: falcon.Request, resp: falcon.Response, **params: Any) -> None:
        relative = params.get("path") or ""
        found = resolve_static(self._root, relative)
        if found is None:
            raise falcon.HTTPNotFound(description=f"no such file: /static/{relative}")
        revalidate = found.suffix == ".html" or relative in SERVICE_WORKER_SCOPES
        cache = NO_CACHE if revalidate else ASSET_CACHE
        _send_file(req, resp, found, cache, self._tiles)
        scope = SERVICE_WORKER_SCOPES.get(relative)
        if scope is not None:
            resp.set_header("Service-Worker-Allowed", scope)


class PageResource:
    """``/app`` and ``/dashboard``: a page's ``index.html`` (redirected to HTTPS on HTTP)."""

    def __init__(self, root: Path, https_base: str | None, tiles: MapTiles | None = None) -> None:
        self._root = root
        self._tiles = tiles or MapTiles()
        self._https_base = https_base.rstrip("/") if https_base else None

    def __call__(self, req: falcon.Request, resp: falcon.Response, **params: Any) -> None:
        page = params.get("page") or ""
        sub = params.get("sub")
        if sub:
            page = f"{page}/{sub}"
        if self._https_base is not None and req.scheme != "https":
            if req.method not in ("GET", "HEAD"):
                raise falcon.HTTPMethodNotAllowed(["GET", "HEAD"])
            query = f"?{req.query_string}" if req.query_string else ""
            raise falcon.HTTPFound(f"{self._https_base}/{page}{query}")
        found = resolve_static(self._root, f"{page}.html" if sub else f"{page}/index.html")
        if found is None:
            raise falcon.HTTPNotFound(description=f"the {page} page is not installed")
        _send_file(req, resp, found, NO_CACHE, self._tiles)
        # CSP, framing, HSTS and Referrer-Policy: gateway.headers, for every page alike.


class FrontDoor:
    """``/``: the driver app (on HTTPS when the gateway has it), where a person typing the
    host name wants to be; the API and the dashboard have their own addresses."""

    def __init__(self, https_base: str | None) -> None:
        self._target = f"{https_base.rstrip('/')}/app" if https_base else "/app"

    def __call__(self, req: falcon.Request, resp: falcon.Response, **params: Any) -> None:
        if req.method not in ("GET", "HEAD"):
            raise falcon.HTTPMethodNotAllowed(["GET", "HEAD"])
        raise falcon.HTTPFound(self._target)


def add_static_routes(
    app: Any,
    https_base: str | None = None,
    *,
    root: Path = STATIC_ROOT,
    tiles: MapTiles | None = None,
) -> None:
    """Serve ``/`` (a redirect to the app), ``/app``, ``/dashboard`` and ``/static/...`` from
    ``root`` (``app``: a Falcon app, or anything with its ``add_sink``, such as
    ``gateway.asgi.AsgiRoutes``); ``tiles``: the maps' tile setting, filled into the pages
    (default: OpenStreetMap's)."""
    pages = "|".join(re.escape(p) for p in PAGES)
    app.add_sink(FrontDoor(https_base), re.compile(r"^/$"))
    app.add_sink(PageResource(root, https_base, tiles), re.compile(rf"^/(?P<page>{pages})/?$"))
    subs = "|".join(re.escape(p) for p in OPERATOR_PAGES)
    operator_pages = re.compile(rf"^/(?P<page>dashboard)/(?P<sub>{subs})/?$")
    app.add_sink(PageResource(root, https_base, tiles), operator_pages)
    app.add_sink(StaticFiles(root, tiles), re.compile(r"^/static/(?P<path>.*)$"))
