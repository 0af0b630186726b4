"""Every JSON shape of an EVSE comes from gateway/views.py, rounded one way; the live events
carry the state and are rendered once per event, however many streams send them."""

from __future__ import annotations

import json
from typing import Any

from actors.fleet_view import EvseView
from actors.live import LiveEvent, LiveHub
from actors.live_feed import LiveFeed
from actors.messages import CommandOutcome, EvseChanged
from actors.session_owners import SessionOwner, SessionOwners
from gateway.views import (
    evse_event_json,
    evse_json,
    live_json,
    outcome_json,
    session_event_json,
)
from protocol import CommandName, EvseStatus, SessionId
from tests.support import evse_state

CHARGING = evse_state(
    "st-001.2",
    status=EvseStatus.CHARGING,
    soc=41.23456,
    power_w=10_987.66,
    energy_wh=1_234.56,
    session_id=SessionId("sess-7"),
    session_energy_wh=456.78,
    target_soc=80.0,
)
PUBLIC_EVENT_KEYS = {
    "id",
    "station_id",
    "status",
    "soc",
    "power_w",
    "energy_wh",
    "session_energy_wh",
    "maintenance",
    "maintenance_pending",
    "session_open",
}
ROUNDED = {"soc": 41.23, "power_w": 10_987.7, "energy_wh": 1_234.6}


def meter(shape: dict[str, Any]) -> dict[str, Any]:
    return {key: shape[key] for key in ROUNDED}


def test_the_api_the_live_events_and_a_command_outcome_round_the_same_way() -> None:
    outcome = CommandOutcome(
        command=CommandName.INFO, accepted=True, reason=None, info=CHARGING.info(), state=CHARGING
    )
    api = evse_json(EvseView(state=CHARGING, updated_at=0.0), now=0.0)
    reply = outcome_json(outcome)["evse"]

    for shape in (api, evse_event_json(CHARGING), session_event_json(CHARGING), reply):
        assert meter(shape) == ROUNDED
    assert api["session"]["energy_wh"] == reply["session_energy_wh"] == 456.8
    assert evse_event_json(CHARGING)["session_energy_wh"] == 456.8
    assert reply["id"] == api["id"] == "st-001.2", "the CSMS's id, not the station's own"


def test_the_public_evse_event_names_no_session_and_the_drivers_event_does() -> None:
    public = evse_event_json(CHARGING)
    own = session_event_json(CHARGING)

    assert set(public) == PUBLIC_EVENT_KEYS
    assert own == {**public, "session_id": "sess-7", "target_soc": 80.0}


def test_the_live_feed_sends_the_state_publicly_and_the_session_to_its_driver_only() -> None:
    hub = LiveHub()
    everyone = hub.subscribe(lambda event: event.public)
    ada = hub.subscribe(lambda event: event.user_id == "ada")
    owners = SessionOwners()
    owners.expect(SessionOwner(session_id="sess-7", driver_id="ada"))

    LiveFeed(hub, owners).evse_changed(EvseChanged(state=CHARGING, effects=()))

    public = everyone.get(timeout=0)
    own = ada.get(timeout=0)
    assert public is not None
    assert own is not None
    assert (public.kind, public.data) == ("evse", CHARGING)
    assert (own.kind, own.data) == ("session", CHARGING)
    assert everyone.get(timeout=0) is None, "the session event is not public"
    assert live_json(public) == evse_event_json(CHARGING)
    assert live_json(own) == session_event_json(CHARGING)


def test_an_event_is_rendered_once_for_every_stream_that_sends_it() -> None:
    renders: list[LiveEvent] = []

    def render(event: LiveEvent) -> dict[str, Any]:
        renders.append(event)
        return dict(live_json(event))

    event = LiveHub().publish("evse", CHARGING, public=True)
    frames = {event.encode(render) for _ in range(5)}

    assert len(renders) == 1
    (frame,) = frames
    head, data = frame.decode().rstrip("\n").rsplit("\ndata: ", 1)
    assert head == f"id: {event.id}\nevent: evse"
    assert json.loads(data) == evse_event_json(CHARGING)


def test_other_live_data_is_sent_as_it_is() -> None:
    event = LiveHub().publish("station", {"id": "st-001", "online": True}, public=True)

    assert live_json(event) == {"id": "st-001", "online": True}
