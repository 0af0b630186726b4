"""The reservation count: interrupted by maintenance and by an operator's start, each
with the reason delivered live; an unused reservation expires and frees the EVSE."""

from __future__ import annotations

import pytest

from tests import api_fixtures
from tests.api_fixtures import EVSE_IDS, Running, next_event
from tests.driver_client import wait_until

running = api_fixtures.running

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

EVSE = EVSE_IDS[0]


def test_maintenance_interrupts_the_count_and_tells_the_driver_why(running: Running) -> None:
    alice, alice_id = running.driver("alice@example.com")
    operator = running.operator()
    live = running.live(alice_id)

    reserved = running.call("POST", f"/api/v1/evses/{EVSE}/reservation", alice)
    assert reserved.status_code == 201, reserved.json
    running.watcher.wait_for(running.watcher.has_been(EVSE, "Reserved"), "Reserved")
    assert running.call("GET", f"/api/v1/evses/{EVSE}").json["reservation"] is not None

    switched = running.call("PUT", f"/api/v1/evses/{EVSE}/maintenance", operator, {"enabled": True})
    assert switched.status_code == 200, switched.json

    note = next_event(live, "notification")
    assert note.data["kind"] == "reservation_interrupted"
    assert "maintenance" in note.data["message"]
    assert note.data["data"]["reason"] == f"{EVSE} went into maintenance"
    running.watcher.wait_for(running.watcher.status_is(EVSE, "Unavailable"), "Unavailable")
    assert running.call("GET", f"/api/v1/evses/{EVSE}").json["reservation"] is None
    row = running.storage.reservations.get(reserved.json["id"])
    assert row is not None
    assert row.outcome == "interrupted"
    stored = running.call("GET", "/api/v1/me/notifications", alice).json["notifications"]
    assert stored[0]["kind"] == "reservation_interrupted"


def test_an_operators_start_interrupts_the_count(running: Running) -> None:
    """Another driver's start is refused instead (tests/test_driver_rules.py)."""
    alice, alice_id = running.driver("alice@example.com")
    operator = running.operator()
    live = running.live(alice_id)
    assert running.call("POST", f"/api/v1/evses/{EVSE}/reservation", alice).status_code == 201
    running.watcher.wait_for(running.watcher.has_been(EVSE, "Reserved"), "Reserved")

    started = running.call("POST", f"/api/v1/evses/{EVSE}/start", operator)
    assert started.status_code == 201, started.json

    note = next_event(live, "notification")
    assert note.data["kind"] == "reservation_interrupted"
    assert "someone else started charging" in note.data["message"]
    running.watcher.wait_for(running.watcher.status_is(EVSE, "Charging"), "the operator charging")


def test_the_holder_starting_uses_the_reservation(running: Running) -> None:
    alice, _ = running.driver("alice@example.com")
    reserved = running.call("POST", f"/api/v1/evses/{EVSE}/reservation", alice)
    running.watcher.wait_for(running.watcher.has_been(EVSE, "Reserved"), "Reserved")
    assert running.call("POST", f"/api/v1/evses/{EVSE}/start", alice).status_code == 201
    running.watcher.wait_for(running.watcher.status_is(EVSE, "Charging"), "charging")

    def outcome() -> str | None:
        row = running.storage.reservations.get(reserved.json["id"])
        return None if row is None else row.outcome

    # The reservation actor hears of the start on its own thread: wait for its write.
    assert wait_until(outcome, "the reservation to be marked used", timeout=10) == "used"


@pytest.mark.manual_clock
def test_an_unused_reservation_expires_on_the_csms_clock_and_frees_the_evse(
    running: Running,
) -> None:
    """Driven on the manual clock: nothing expires until the CSMS's time passes the end."""
    assert running.clock is not None
    alice, alice_id = running.driver("alice@example.com")
    live = running.live(alice_id)
    reserved = running.call("POST", f"/api/v1/evses/{EVSE}/reservation", alice)
    assert reserved.status_code == 201
    running.watcher.wait_for(running.watcher.has_been(EVSE, "Reserved"), "Reserved")
    hold_s = running.system.config.reservation_s

    running.clock.advance(hold_s - 1)
    # The expiry timer only tells the reservation actor, so this read (an ask queued behind
    # anything the advance told it) would already see the reservation gone.
    assert running.call("GET", f"/api/v1/evses/{EVSE}").json["reservation"] is not None
    running.clock.advance(1)

    note = next_event(live, "notification", timeout=10)
    assert note.data["kind"] == "reservation_expired"
    # The station was told to cancel (a command tell): it reports Available again.
    running.watcher.wait_for(running.watcher.status_is(EVSE, "Available"), "Available again")
    assert running.call("GET", f"/api/v1/evses/{EVSE}").json["reservation"] is None
    row = running.storage.reservations.get(reserved.json["id"])
    assert row is not None
    assert row.outcome == "expired"
    assert row.ended_at is not None
    assert abs(row.ended_at - reserved.json["expires_at"]) <= 1  # expired at the CSMS clock's end
