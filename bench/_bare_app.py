"""The baseline of ``bench gateway``: a bare Falcon endpoint, served by the same gunicorn config.

``python -m gunicorn -k gthread -w 1 --threads 32 bench._bare_app:app``; every path answers a
small JSON object (about the size of one EVSE's public view).
"""

from __future__ import annotations

import falcon

__all__ = ["app"]


class _Hello:
    def on_get(self, req: falcon.Request, resp: falcon.Response, **_: str) -> None:
        resp.media = {
            "id": "gb-001-1",
            "station_id": "gb-001",
            "status": "Available",
            "power_w": 0.0,
            "soc": None,
            "connector": "Type2",
            "max_power_w": 22000.0,
        }


app = falcon.App()
app.add_route("/hello", _Hello())
app.add_route("/hello/{anything}", _Hello())
