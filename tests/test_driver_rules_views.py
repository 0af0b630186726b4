"""Public EVSE views name no driver's session or reservation (issue 12, point 3): anonymous
reads and other drivers see ``null`` in place of the ids; the driver and operators see them."""

from __future__ import annotations

import json

import pytest

from tests import api_fixtures
from tests.api_fixtures import EVSE_IDS, Running

running = api_fixtures.running

pytestmark = [pytest.mark.integration, pytest.mark.needs_db, pytest.mark.timeout(120)]

RESERVED, CHARGING = EVSE_IDS[0], EVSE_IDS[1]
STATION = RESERVED.split(".")[0]
READS = (
    "/api/v1/stations",
    f"/api/v1/stations/{STATION}",
    f"/api/v1/evses/{RESERVED}",
    f"/api/v1/evses/{CHARGING}",
    "/api/v1/evses/nearest?lat=0&lon=0&limit=100",
)


def test_only_the_driver_and_operators_see_the_ids_of_a_session_and_a_reservation(
    running: Running,
) -> None:
    alice, _ = running.driver("alice@example.com")
    bob, _ = running.driver("bob@example.com")
    operator = running.operator()
    reserved = running.call("POST", f"/api/v1/evses/{RESERVED}/reservation", alice)
    assert reserved.status_code == 201, reserved.json
    started = running.call("POST", f"/api/v1/evses/{CHARGING}/start", alice)
    assert started.status_code == 201, started.json
    running.watcher.wait_for(running.watcher.status_is(RESERVED, "Reserved"), "Reserved")
    running.watcher.wait_for(running.watcher.status_is(CHARGING, "Charging"), "charging")
    ids = (reserved.json["id"], started.json["session_id"])

    def shown(path: str, token: str | None) -> set[str]:
        result = running.call("GET", path, token)
        assert result.status_code == 200, (path, result.json)
        text = json.dumps(result.json)
        return {i for i in ids if i in text}

    for path in READS:
        assert shown(path, None) == set(), path
        assert shown(path, bob) == set(), path
    assert shown("/api/v1/stations", alice) == set(ids)
    assert shown("/api/v1/stations", operator) == set(ids)
    assert shown(f"/api/v1/evses/{CHARGING}", alice) == {started.json["session_id"]}
    assert shown(f"/api/v1/evses/{RESERVED}", alice) == {reserved.json["id"]}
    evse = running.call("GET", f"/api/v1/evses/{CHARGING}").json
    assert evse["session"]["open"] is True  # the rest of the session stays public
    # The live info round trip too: the station's answer names the session.
    assert shown(f"/api/v1/evses/{CHARGING}/info", bob) == set()
    assert shown(f"/api/v1/evses/{CHARGING}/info", alice) == {started.json["session_id"]}
    assert shown(f"/api/v1/evses/{RESERVED}/info", bob) == set()
    assert shown(f"/api/v1/evses/{RESERVED}/info", operator) == {reserved.json["id"]}
