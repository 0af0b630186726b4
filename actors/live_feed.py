"""LiveFeed: a listener turning EVSE changes into live events: a public ``evse`` event
for every change, and a ``session`` event to the driver whose session it is; station
changes and operator alerts go live too."""

from __future__ import annotations

from typing import Any

from actors.dashboard import EvseListener
from actors.evse_state import EvseState
from actors.live import LiveHub
from actors.messages import EvseChanged, OperatorAlert, StationChanged
from actors.session_owners import SessionOwners

__all__ = ["LiveFeed", "evse_summary"]


def evse_summary(state: EvseState) -> dict[str, Any]:
    """The live view of an EVSE, as pushed to browsers (no driver identities)."""
    return {
        "id": state.evse_id,
        "station_id": state.station_id,
        "status": str(state.status),
        "soc": None if state.soc is None else round(state.soc, 1),
        "power_w": round(state.power_w),
        "energy_wh": round(state.energy_wh, 1),
        "session_energy_wh": round(state.session_energy_wh, 1),
        "maintenance": state.maintenance,
        "maintenance_pending": state.maintenance_pending,
        "session_open": state.session_open,
    }


class LiveFeed(EvseListener):
    """EVSE changes, station changes and operator alerts, pushed to the live streams."""

    def __init__(self, hub: LiveHub, owners: SessionOwners) -> None:
        self._hub = hub
        self._owners = owners

    def evse_changed(self, event: EvseChanged) -> None:
        state = event.state
        summary = evse_summary(state)
        self._hub.publish("evse", summary, public=True)
        if state.session_id is not None:
            driver = self._owners.driver_of(state.session_id)
            if driver is not None:
                self._hub.publish(
                    "session",
                    {**summary, "session_id": state.session_id, "target_soc": state.target_soc},
                    user_id=driver,
                )

    def station_changed(self, event: StationChanged) -> None:
        self._hub.publish("station", {"id": event.station.id, "online": event.online}, public=True)

    def operator_alert(self, alert: OperatorAlert) -> None:
        self._hub.publish(
            "alert",
            {
                "kind": alert.kind,
                "message": alert.message,
                "evse_id": alert.evse_id,
                "station_id": alert.station_id,
                "created_at": alert.ts,
            },
        )
