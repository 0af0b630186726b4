"""Metrics over HTTP: ``/metrics`` for Prometheus, ``/api/v1/metrics/summary`` for operators.

``/metrics`` is public like ``/healthz`` (Prometheus scrapes plain HTTP without a token): it
tells how busy the CSMS is, never who charges where. Put it behind the network's own access
rules if that is too much. The summary names stations and EVSEs and is for operators only.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import falcon
from prometheus_client import CONTENT_TYPE_LATEST

from actors.fleet_view import FleetView
from actors.metrics import CsmsMetrics
from gateway.security import require
from storage import MetricsSummary

__all__ = ["MetricsSummaryResource", "PrometheusResource", "summary_json"]


class PrometheusResource:
    """``GET /metrics``: the Prometheus text exposition format."""

    def __init__(self, metrics: CsmsMetrics) -> None:
        self._metrics = metrics

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = CONTENT_TYPE_LATEST
        resp.data = self._metrics.exposition()


def summary_json(summary: MetricsSummary, fleet_evses: Iterable[str]) -> dict[str, Any]:
    """The summary's JSON; ``fleet_evses`` without a session in the window count at 0 %."""
    busy = {u.evse_id: u.percent for u in summary.utilisation}
    today = summary.today
    return {
        "energy_today_wh": round(today.energy_wh, 1),
        "sessions_today": today.sessions,
        "energy_by_day": [
            {"day": d.day, "energy_wh": round(d.energy_wh, 1), "sessions": d.sessions}
            for d in summary.by_day
        ],
        "energy_by_station": [
            {"station_id": s.station_id, "energy_wh": round(s.energy_wh, 1), "sessions": s.sessions}
            for s in summary.by_station
        ],
        "average_duration_s": None
        if summary.average_duration_s is None
        else round(summary.average_duration_s, 1),
        "utilisation": [
            {"evse_id": evse_id, "percent": round(busy.get(evse_id, 0.0), 2)}
            for evse_id in sorted({*busy, *fleet_evses})
        ],
        "window": {
            "now": summary.now,
            "days": len(summary.by_day),
            "days_from": summary.days_from,
            "utilisation_from": summary.utilisation_from,
        },
    }


@falcon.before(require("operator"))
class MetricsSummaryResource:
    """``GET /api/v1/metrics/summary`` (operators): energy, sessions and utilisation."""

    def __init__(self, store: Any, view: FleetView) -> None:
        self._store = store
        self._view = view

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        summary: MetricsSummary = self._store.summary()
        fleet = [evse.state.evse_id for evse in self._view.evses()]
        resp.media = summary_json(summary, fleet)
