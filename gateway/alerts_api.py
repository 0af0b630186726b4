"""``/api/v1/alerts`` (operators): the alert log, newest first with filters and pages, and
``POST /api/v1/alerts/{id}/ack`` (who and when, on the CSMS's clock; the first ack stays).

The list reads the database (a gateway apart from the node reads it too); an ack goes to
the node's alert log (``csms.alerts``: in the node's process, or the node-gateway op
``ack_alert``), which stores it and tells every event stream (``alert_ack``).
"""

from __future__ import annotations

from typing import Any, Final, Protocol

import falcon

from actors.charging import Caller
from gateway.security import principal, require
from protocol.ids import valid_station_id
from storage import SEVERITIES, Alert

__all__ = ["AlertAckResource", "AlertAcker", "AlertsResource"]

MAX_LIMIT: Final = 200


class AlertAcker(Protocol):
    def ack_alert(self, caller: Caller, alert_id: int, by: str) -> Alert: ...


def _invalid(name: str, why: str) -> falcon.HTTPInvalidParam:
    return falcon.HTTPInvalidParam(why, name)


@falcon.before(require("operator"))
class AlertsResource:
    """``GET /alerts?severity=&station=&unacked=1&limit=&before=``: ``{"alerts", "next"}``;
    ``next`` is the ``before`` of the next page, ``null`` on the last one."""

    def __init__(self, alerts: Any) -> None:
        self._alerts = alerts

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        limit = req.get_param_as_int("limit", default=50, min_value=1, max_value=MAX_LIMIT)
        before = req.get_param_as_int("before", min_value=1)
        severities: list[str] = []
        for raw in req.get_param_as_list("severity") or []:
            for value in str(raw).split(","):
                if value not in SEVERITIES:
                    raise _invalid("severity", f"one of {', '.join(SEVERITIES)}")
                severities.append(value)
        station = req.get_param("station")
        if station is not None and not valid_station_id(station):
            raise _invalid("station", "a station id")
        unacked = req.get_param_as_bool("unacked", default=False)
        rows = self._alerts.page(
            limit=limit + 1,
            before=before,
            severities=severities,
            station_id=station,
            unacked=bool(unacked),
        )
        page = rows[:limit]
        resp.media = {
            "alerts": [a.to_json() for a in page],
            "next": page[-1].id if len(rows) > limit else None,
        }


@falcon.before(require("operator"))
class AlertAckResource:
    """``POST /alerts/{alert_id}/ack``: 200 with the alert as stored (acked twice: the
    first ack, unchanged); 404 for an unknown id."""

    def __init__(self, acker: AlertAcker) -> None:
        self._acker = acker

    def on_post(self, req: falcon.Request, resp: falcon.Response, alert_id: str) -> None:
        if not alert_id.isdigit() or len(alert_id) > 18:
            raise falcon.HTTPNotFound(title="Not Found", description=f"no alert {alert_id[:40]!r}")
        who = principal(req)
        caller = Caller(user_id=who.user_id, operator=who.role == "operator")
        alert = self._acker.ack_alert(caller, int(alert_id), who.email)
        resp.media = alert.to_json()
