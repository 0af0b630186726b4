"""Every JSON shape of an EVSE, and the one rounding rule they share. Outside clients rely
on these: change them carefully.

- the API: ``{"stations": [{"id", "name", "lat", "lon", "online", "evses": [EVSE, ...]}]}``
  and an EVSE alone as the same object (:func:`evse_json`);
- the live events (:func:`live_json`): the public ``evse`` event (no driver identity, no
  session id) and the driver's own ``session`` event, rendered when a stream sends them;
- a command's outcome (:func:`outcome_json`): the EVSE as the station's reply shows it.

Whose ids are shown: a session's id and a reservation's id name one driver, so the API
shapes show them only to that driver and to operators (:class:`Viewer`); anyone else,
and every anonymous read, gets ``null`` in their place. The rest of the EVSE (status,
meter values, a reservation's time left) is public.

Status strings are the OCPP 1.6 names plus "Offline". Rounding: ``soc`` to 0.01 %,
``power_w`` to 0.1 W, every energy to 0.1 Wh.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from actors.evse_state import EvseState
from actors.fleet_view import EvseView, StationView
from actors.live import LiveEvent
from actors.messages import CommandOutcome
from protocol import EvseValues

__all__ = [
    "ANONYMOUS",
    "Viewer",
    "evse_event_json",
    "evse_json",
    "live_json",
    "outcome_json",
    "session_event_json",
    "station_json",
]


def _nobody(session_id: str) -> str | None:
    return None


@dataclass(frozen=True, slots=True, kw_only=True)
class Viewer:
    """Who reads an EVSE: an operator sees every id, a driver the ids of their own session
    and reservation, anyone else none. ``driver_of``: a session's driver, from memory."""

    user_id: str | None = None
    operator: bool = False
    driver_of: Callable[[str], str | None] = field(default=_nobody)

    def sees_session(self, session_id: str | None) -> bool:
        if session_id is None or self.operator:
            return True
        return self.user_id is not None and self.driver_of(session_id) == self.user_id

    def sees_reservation(self, reservation_id: str | None, count: Any) -> bool:
        """``count``: the CSMS's reservation on the EVSE (its ``driver_id``), if any."""
        if reservation_id is None or self.operator:
            return True
        return (
            self.user_id is not None
            and count is not None
            and count.id == reservation_id
            and count.driver_id == self.user_id
        )


ANONYMOUS = Viewer()
"""A read without a token: no driver's ids."""


def _energy(wh: float) -> float:
    return round(wh, 1)


def _values_json(values: EvseValues) -> dict[str, Any]:
    """What every shape shows of an EVSE's reported values, rounded the one way."""
    return {
        "status": str(values.status),
        "soc": None if values.soc is None else round(values.soc, 2),
        "power_w": round(values.power_w, 1),
        "energy_wh": _energy(values.energy_wh),
        "maintenance": values.maintenance,
        "maintenance_pending": values.maintenance_pending,
    }


def evse_json(
    view: EvseView, now: float, reservation: Any = None, viewer: Viewer = ANONYMOUS
) -> dict[str, Any]:
    """``reservation``: the CSMS's count on this EVSE (its end and time left), if any;
    ``viewer``: who reads (the ids only for their owner and operators)."""
    s = view.state
    count = None if reservation is None else reservation.public(int(now * 1000))
    if count is not None and not viewer.sees_reservation(reservation.id, reservation):
        count["id"] = None
    return {
        "id": s.evse_id,
        "station_id": s.station_id,
        **_values_json(s),
        "max_power_w": s.descriptor.max_power_w,
        "connector": s.descriptor.connector,
        "session": None
        if s.session_id is None
        else {
            "id": s.session_id if viewer.sees_session(s.session_id) else None,
            "open": s.session_open,
            "energy_wh": _energy(s.session_energy_wh),
            "target_soc": s.target_soc,
            "stop_reason": None if s.stop_reason is None else str(s.stop_reason),
        },
        "reservation_id": s.reservation_id
        if viewer.sees_reservation(s.reservation_id, reservation)
        else None,
        "reservation": count,
        "last_report_age_s": round(max(0.0, now - view.updated_at), 1),
        "alert": view.alert,
    }


def station_json(
    view: StationView,
    now: float,
    reservation: Callable[[str], Any] | None = None,
    viewer: Viewer = ANONYMOUS,
) -> dict[str, Any]:
    st = view.station
    return {
        "id": st.id,
        "name": st.name,
        "lat": st.lat,
        "lon": st.lon,
        "online": view.online,
        "evses": [
            evse_json(e, now, reservation(e.state.evse_id) if reservation else None, viewer)
            for e in view.evses
        ],
    }


def evse_event_json(state: EvseState) -> dict[str, Any]:
    """The public live ``evse`` event: no driver identity, no session id."""
    return {
        "id": state.evse_id,
        "station_id": state.station_id,
        **_values_json(state),
        "session_energy_wh": _energy(state.session_energy_wh),
        "session_open": state.session_open,
    }


def session_event_json(state: EvseState) -> dict[str, Any]:
    """The live ``session`` event, sent to the session's driver only."""
    return {
        **evse_event_json(state),
        "session_id": state.session_id,
        "target_soc": state.target_soc,
    }


def live_json(event: LiveEvent) -> Mapping[str, Any]:
    """The JSON of a live event: an EVSE's state as its event shape, other data as it is."""
    data = event.data
    if not isinstance(data, EvseState):
        return data
    return session_event_json(data) if event.kind == "session" else evse_event_json(data)


def outcome_json(
    outcome: CommandOutcome, viewer: Viewer = ANONYMOUS, reservation: Any = None
) -> dict[str, Any]:
    """A command's outcome; ``evse`` is the station's reply as the CSMS names the EVSE (its
    ids for ``viewer`` as in :func:`evse_json`; ``reservation``: the CSMS's count there)."""
    info = outcome.info
    return {
        "command": str(outcome.command),
        "accepted": outcome.accepted,
        "reason": outcome.reason,
        "evse": None
        if info is None
        else {
            "id": outcome.state.evse_id,  # the CSMS's id (station.evse), not the station's own
            **_values_json(info),
            "session_id": info.session_id if viewer.sees_session(info.session_id) else None,
            "session_energy_wh": _energy(info.session_energy_wh),
            "reservation_id": info.reservation_id
            if viewer.sees_reservation(info.reservation_id, reservation)
            else None,
        },
    }
