"""The API's security rules, end to end over the in-process CSMS: who may do what. Drivers
cannot touch each other's sessions or reservations, roles are enforced, and plain HTTP only
serves anonymous reads."""

from __future__ import annotations

import json

import pytest

from tests import api_fixtures
from tests.api_fixtures import HTTPS_BASE, PASSWORD, Running, next_event
from tests.security_support import EVSE, reason_of

running = api_fixtures.running  # the fixture (an assignment, so tests may shadow it)

pytestmark = pytest.mark.timeout(120)


# -- 1. one driver cannot touch another's things -------------------------------------------


@pytest.mark.integration
def test_another_driver_cannot_cancel_a_reservation(running: Running) -> None:
    alice, _ = running.driver("alice@example.com")
    bob, _ = running.driver("bob@example.com")
    reserved = running.call("POST", f"/api/v1/evses/{EVSE}/reservation", alice)
    assert reserved.status_code == 201, reserved.json
    running.watcher.wait_for(running.watcher.status_is(EVSE, "Reserved"), "Reserved")

    cancelled = running.call("DELETE", f"/api/v1/evses/{EVSE}/reservation", bob)

    assert cancelled.status_code == 404, cancelled.json
    assert EVSE in reason_of(cancelled)
    still = running.call("GET", f"/api/v1/evses/{EVSE}", alice).json["reservation"]
    assert still is not None
    assert still["id"] == reserved.json["id"]  # shown to its holder
    public = running.call("GET", f"/api/v1/evses/{EVSE}").json["reservation"]
    assert public["id"] is None  # the public view does not say whose it is
    assert "driver_id" not in still
    assert running.system.charging.reservation(EVSE) is not None
    row = running.storage.reservations.get(reserved.json["id"])
    assert row is not None
    assert row.outcome is None
    assert running.watcher.state(EVSE).status == "Reserved"


@pytest.mark.integration
def test_another_driver_cannot_stop_read_or_see_notes_of_a_session_but_an_operator_can_stop_it(
    running: Running,
) -> None:
    alice, alice_id = running.driver("alice@example.com")
    bob, _ = running.driver("bob@example.com")
    operator = running.operator()
    live = running.live(alice_id)

    started = running.call("POST", f"/api/v1/evses/{EVSE}/start", alice, {"target_soc": 100})
    assert started.status_code == 201, started.json
    session_id = started.json["session_id"]
    # session_started is stored before it is pushed: a barrier for the session row too.
    note = next_event(live, "notification")
    assert note.data["kind"] == "session_started"
    running.watcher.wait_for(running.watcher.status_is(EVSE, "Charging"), "Alice charging")

    stopped = running.call("POST", f"/api/v1/evses/{EVSE}/stop", bob)

    assert stopped.status_code in (403, 404), stopped.json
    assert "not yours" in reason_of(stopped) or "no session" in reason_of(stopped)
    # Barrier: a live round trip to the station, after Bob's attempt.
    info = running.call("GET", f"/api/v1/evses/{EVSE}/info", alice)
    assert info.status_code == 200, info.json
    assert info.json["evse"]["status"] == "Charging"
    assert info.json["evse"]["session_id"] == session_id
    # And the next meter event still shows Alice charging.
    seen = len(running.watcher.history[EVSE])
    running.watcher.wait_for(lambda: len(running.watcher.history[EVSE]) > seen, "a meter event")
    latest = running.watcher.history[EVSE][seen]
    assert latest.status == "Charging"
    assert latest.session_id == session_id

    alice_sessions = running.call("GET", "/api/v1/me/sessions", alice).json["sessions"]
    assert [s["id"] for s in alice_sessions] == [session_id]
    bob_sessions = running.call("GET", "/api/v1/me/sessions", bob)
    assert bob_sessions.status_code == 200
    assert session_id not in json.dumps(bob_sessions.json)
    assert bob_sessions.json["sessions"] == []

    alice_notes = running.call("GET", "/api/v1/me/notifications", alice).json["notifications"]
    assert [n["kind"] for n in alice_notes] == ["session_started"]
    bob_notes = running.call("GET", "/api/v1/me/notifications", bob)
    assert bob_notes.status_code == 200
    assert bob_notes.json["notifications"] == []
    assert session_id not in json.dumps(bob_notes.json)

    by_operator = running.call("POST", f"/api/v1/evses/{EVSE}/stop", operator)
    assert by_operator.status_code == 200, by_operator.json
    assert by_operator.json["accepted"] is True
    running.watcher.wait_for(
        lambda: running.watcher.state(EVSE).status != "Charging", "the session stopped"
    )
    ended = next_event(live, "notification")
    assert ended.data["kind"] == "session_ended"
    assert ended.data["data"]["session_id"] == session_id


# -- 2. roles --------------------------------------------------------------------------------


@pytest.mark.integration
def test_a_driver_token_is_refused_on_maintenance_and_an_operator_token_is_not(
    running: Running,
) -> None:
    alice, _ = running.driver("alice@example.com")
    operator = running.operator()

    refused = running.call("PUT", f"/api/v1/evses/{EVSE}/maintenance", alice, {"enabled": True})
    assert refused.status_code == 403, refused.json
    assert "operator" in reason_of(refused)
    assert running.watcher.state(EVSE).maintenance is False

    allowed = running.call("PUT", f"/api/v1/evses/{EVSE}/maintenance", operator, {"enabled": True})
    assert allowed.status_code == 200, allowed.json
    running.watcher.wait_for(running.watcher.status_is(EVSE, "Unavailable"), "Unavailable")


@pytest.mark.integration
def test_a_driver_token_is_refused_on_the_operator_event_stream(running: Running) -> None:
    alice, _ = running.driver("alice@example.com")

    by_header = running.call("GET", "/api/v1/events", alice)
    assert by_header.status_code == 403, by_header.text
    assert "operator" in reason_of(by_header)

    by_query = running.client.simulate_get(
        "/api/v1/events", params={"access_token": alice}, protocol="https"
    )
    assert by_query.status_code == 403, by_query.text
    reason_of(by_query)


# -- 4. plain HTTP -----------------------------------------------------------------------


@pytest.mark.integration
def test_writes_over_plain_http_get_403_naming_the_https_url(running: Running) -> None:
    alice, _ = running.driver("alice@example.com")
    operator = running.operator()
    calls = [
        ("POST", "/api/v1/auth/login", None, {"email": "alice@example.com", "password": PASSWORD}),
        ("POST", "/api/v1/auth/register", None, {"email": "eve@example.com", "password": PASSWORD}),
        ("POST", f"/api/v1/evses/{EVSE}/start", alice, {}),
        ("PUT", f"/api/v1/evses/{EVSE}/maintenance", operator, {"enabled": True}),
    ]
    for method, path, token, body in calls:
        result = running.call(method, path, token, body, https=False)
        assert result.status_code == 403, (path, result.json)
        assert f"{HTTPS_BASE}{path}" in reason_of(result), result.json
    assert running.storage.users.by_email("eve@example.com") is None
    assert running.watcher.state(EVSE).status == "Available"
    assert running.watcher.state(EVSE).maintenance is False


@pytest.mark.integration
def test_a_get_carrying_a_token_over_plain_http_gets_403(running: Running) -> None:
    alice, _ = running.driver("alice@example.com")
    for path in ("/api/v1/me/sessions", "/api/v1/stations"):
        result = running.call("GET", path, alice, https=False)
        assert result.status_code == 403, (path, result.json)
        assert HTTPS_BASE in reason_of(result)
    by_query = running.client.simulate_get(
        "/api/v1/me/events", params={"access_token": alice}, protocol="http"
    )
    assert by_query.status_code == 403, by_query.text
    assert HTTPS_BASE in reason_of(by_query)


@pytest.mark.integration
def test_a_public_get_without_a_token_over_plain_http_is_served(running: Running) -> None:
    for path in ("/api/v1/stations", f"/api/v1/evses/{EVSE}", "/healthz"):
        result = running.call("GET", path, https=False)
        assert result.status_code == 200, (path, result.json)
