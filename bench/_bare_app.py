"""The baseline of ``bench gateway``: a bare Falcon endpoint, served by the same gunicorn config.

``python -m gunicorn -k uvicorn_worker.UvicornWorker -w 1 bench._bare_app:app`` (the ASGI app,
the CSMS's worker class without its guards); every path answers a small JSON object (about
the size of one EVSE's public view).
"""

from __future__ import annotations

import falcon
import falcon.asgi

__all__ = ["app"]


class _Hello:
    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response, **_: str) -> None:
        resp.media = {
            "id": "gb-001-1",
            "station_id": "gb-001",
            "status": "Available",
            "power_w": 0.0,
            "soc": None,
            "connector": "Type2",
            "max_power_w": 22000.0,
        }


app = falcon.asgi.App()
app.add_route("/hello", _Hello())
app.add_route("/hello/{anything}", _Hello())
