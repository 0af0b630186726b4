"""LiveFeed: a listener turning EVSE changes into live events: a public ``evse`` event
for every change, and a ``session`` event to the driver whose session it is; station
changes go live too (operator alerts go live from the alert log, once stored:
:mod:`actors.alert_log`).

The EVSE events carry the :class:`~actors.evse_state.EvseState` itself: their JSON shapes
are the gateway's (``gateway/views.py``), rendered once per event when a stream sends it.
"""

from __future__ import annotations

from actors.listeners import EvseListener
from actors.live import LiveHub
from actors.messages import EvseChanged, StationChanged
from actors.session_owners import SessionOwners

__all__ = ["LiveFeed"]


class LiveFeed(EvseListener):
    """EVSE changes and station changes, pushed to the live streams."""

    def __init__(self, hub: LiveHub, owners: SessionOwners) -> None:
        self._hub = hub
        self._owners = owners

    def evse_changed(self, event: EvseChanged) -> None:
        state = event.state
        self._hub.publish("evse", state, public=True)
        if state.session_id is not None:
            driver = self._owners.driver_of(state.session_id)
            if driver is not None:
                self._hub.publish("session", state, user_id=driver)

    def station_changed(self, event: StationChanged) -> None:
        self._hub.publish("station", {"id": event.station.id, "online": event.online}, public=True)
