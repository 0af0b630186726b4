"""Security headers on every response, set once (a Falcon middleware), errors included.

- ``Content-Security-Policy``: pages (any ``text/html``) load only their own files, with no
  inline script or style and no framing (:data:`PAGE_CSP`; images also from the map's tile
  origin, :func:`page_csp`); everything else (JSON, files)
  may load nothing and be framed by nobody (:data:`API_CSP`).
- ``X-Frame-Options: DENY`` for browsers without ``frame-ancestors``; ``nosniff``;
  ``Referrer-Policy: same-origin``.
- ``Strict-Transport-Security`` on every HTTPS response (never on plain HTTP, where it means
  nothing and would be a lie about what the port serves).
- ``Cache-Control: no-store`` on the account endpoints (``/api/v1/auth/...``), whose answers
  carry tokens or say something about an account: no cache or history keeps them.
"""

from __future__ import annotations

import falcon

__all__ = ["API_CSP", "HSTS", "PAGE_CSP", "SecurityHeaders", "page_csp"]

PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; manifest-src 'self'; worker-src 'self'; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
"""The pages load nothing but their own files (no inline script or style, no CDN)."""


def page_csp(img_sources: str) -> str:
    """:data:`PAGE_CSP` with another ``img-src`` (the map's tile origin:
    ``gateway.map_tiles.MapTiles.img_sources``)."""
    return PAGE_CSP.replace("img-src 'self' data:;", f"img-src {img_sources};")


API_CSP = "default-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
HSTS = "max-age=31536000"
NO_STORE_PREFIX = "/api/v1/auth/"


class SecurityHeaders:
    def __init__(self, page: str = PAGE_CSP) -> None:
        self._page_csp = page

    def process_response(
        self, req: falcon.Request, resp: falcon.Response, resource: object, req_succeeded: bool
    ) -> None:
        html = (resp.content_type or "").startswith("text/html")
        if resp.status_code != 304:  # a 304's headers update the cached page's: keep its CSP
            resp.set_header("Content-Security-Policy", self._page_csp if html else API_CSP)
        resp.set_header("X-Frame-Options", "DENY")
        resp.set_header("X-Content-Type-Options", "nosniff")
        resp.set_header("Referrer-Policy", "same-origin")
        if req.scheme == "https":
            resp.set_header("Strict-Transport-Security", HSTS)
        if req.path.startswith(NO_STORE_PREFIX):
            resp.set_header("Cache-Control", "no-store")
            resp.set_header("Pragma", "no-cache")
