"""JSON shapes of the public API. Outside clients rely on these: change them carefully.

``{"stations": [{"id", "name", "lat", "lon", "online", "evses": [EVSE, ...]}]}`` and an
EVSE alone as the same object; status strings are the OCPP 1.6 names plus "Offline".
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from actors.fleet_view import EvseView, StationView

__all__ = ["evse_json", "station_json"]


def evse_json(view: EvseView, now: float, reservation: Any = None) -> dict[str, Any]:
    """``reservation``: the CSMS's count on this EVSE (its end and time left), if any."""
    s = view.state
    return {
        "id": s.evse_id,
        "station_id": s.station_id,
        "status": str(s.status),
        "soc": None if s.soc is None else round(s.soc, 2),
        "power_w": round(s.power_w, 1),
        "energy_wh": round(s.energy_wh, 1),
        "max_power_w": s.descriptor.max_power_w,
        "connector": s.descriptor.connector,
        "session": None
        if s.session_id is None
        else {
            "id": s.session_id,
            "open": s.session_open,
            "energy_wh": round(s.session_energy_wh, 1),
            "target_soc": s.target_soc,
            "stop_reason": None if s.stop_reason is None else str(s.stop_reason),
        },
        "reservation_id": s.reservation_id,
        "reservation": None if reservation is None else reservation.public(int(now * 1000)),
        "maintenance": s.maintenance,
        "maintenance_pending": s.maintenance_pending,
        "last_report_age_s": round(max(0.0, now - view.updated_at), 1),
        "alert": view.alert,
    }


def station_json(
    view: StationView, now: float, reservation: Callable[[str], Any] | None = None
) -> dict[str, Any]:
    st = view.station
    return {
        "id": st.id,
        "name": st.name,
        "lat": st.lat,
        "lon": st.lon,
        "online": view.online,
        "evses": [
            evse_json(e, now, reservation(e.state.evse_id) if reservation else None)
            for e in view.evses
        ],
    }
