"""Where the pages' maps get their tiles: ``--map-tiles URL`` / ``--map-attribution TEXT``
(env ``SMARTCHARGE_MAP_TILES`` / ``SMARTCHARGE_MAP_ATTRIBUTION``).

- The URL is a Leaflet tile template: ``http`` or ``https``, a host, the ``{z}``, ``{x}`` and
  ``{y}`` placeholders (``{s}`` and ``{r}`` allowed too), no user or password, at most
  :data:`MAX_URL` characters; ``none`` turns tiles off (the maps show the stations only).
- The pages learn the setting from two ``<meta>`` tags the static handler fills in
  (:func:`page_meta`); the pages' CSP ``img-src`` allows exactly the tile origin
  (:func:`img_sources`), nothing else from outside.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

__all__ = [
    "DEFAULT_ATTRIBUTION",
    "DEFAULT_TILES",
    "MAX_ATTRIBUTION",
    "MAX_URL",
    "MapTiles",
    "parse_map_tiles",
]

DEFAULT_TILES = "https://tile.openstreetmap.org/{z}/{x}/{y}.png"
DEFAULT_ATTRIBUTION = "© OpenStreetMap contributors"
MAX_URL = 512
MAX_ATTRIBUTION = 200
OFF = "none"

_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_ALLOWED_PLACEHOLDERS = {"z", "x", "y", "s", "r"}
_HOST = re.compile(r"^[A-Za-z0-9.-]+$|^[0-9A-Fa-f:.]+$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class MapTiles:
    """A checked tile setting; ``url`` ``None``: no tiles."""

    url: str | None = DEFAULT_TILES
    attribution: str = DEFAULT_ATTRIBUTION

    @property
    def origin(self) -> str | None:
        """``scheme://host[:port]`` of the tiles (what the CSP allows), or ``None``."""
        if self.url is None:
            return None
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.netloc}"

    def img_sources(self) -> str:
        """The pages' CSP ``img-src`` value."""
        origin = self.origin
        return "'self' data:" + (f" {origin}" if origin else "")

    def page_meta(self) -> dict[str, str]:
        """The ``<meta>`` contents the pages read (``sc-map-tiles``: the URL or ``none``)."""
        return {
            "sc-map-tiles": self.url or OFF,
            "sc-map-attribution": self.attribution if self.url else "",
        }

    def fill(self, page: bytes) -> bytes:
        """``page`` with its empty ``<meta name="sc-map-..." content="">`` tags filled in."""
        for name, value in self.page_meta().items():
            empty = f'<meta name="{name}" content="">'.encode()
            if empty in page:
                filled = f'<meta name="{name}" content="{html.escape(value, quote=True)}">'
                page = page.replace(empty, filled.encode())
        return page


def check_tile_url(url: str) -> str:
    """``url`` if it is a usable tile template, else ``ValueError`` saying why."""
    if len(url) > MAX_URL:
        raise ValueError(f"the tile URL is longer than {MAX_URL} characters")
    if _CONTROL.search(url) or any(c.isspace() for c in url) or any(c in url for c in "\"'<>\\`"):
        raise ValueError("the tile URL has spaces, quotes or control characters")
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http"):
        raise ValueError("the tile URL must start with https:// or http://")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise ValueError("the tile URL must not carry a user or password")
    host = parts.hostname or ""
    if not _HOST.match(host) or "{" in parts.netloc:
        raise ValueError("the tile URL needs a plain host name (no placeholder in the host)")
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise ValueError("the tile URL has a bad port") from None
    found = _PLACEHOLDER.findall(url)
    missing = [p for p in ("z", "x", "y") if p not in found]
    if missing:
        raise ValueError("the tile URL must contain {z}, {x} and {y}")
    unknown = sorted(set(found) - _ALLOWED_PLACEHOLDERS)
    if unknown:
        raise ValueError(f"the tile URL has unknown placeholders: {', '.join(unknown)}")
    return url


def parse_map_tiles(url: str | None, attribution: str | None = None) -> MapTiles:
    """The setting from the command line (``None``: the defaults); ``ValueError`` if bad."""
    if url is None or url == "":
        url = DEFAULT_TILES
    if url.strip().lower() == OFF:
        return MapTiles(url=None, attribution="")
    checked = check_tile_url(url)
    if attribution is None:
        attribution = DEFAULT_ATTRIBUTION if checked == DEFAULT_TILES else ""
    if len(attribution) > MAX_ATTRIBUTION or _CONTROL.search(attribution):
        raise ValueError(
            f"the map attribution must be one line of at most {MAX_ATTRIBUTION} characters"
        )
    return MapTiles(url=checked, attribution=attribution)
