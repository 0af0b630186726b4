"""The sites API and a driver's departure (issue 14, points 1 and 2), over the in-process
CSMS with storage: operators only, every field validated, and the node's site actor picks a
site up from the table (whoever wrote it)."""

from __future__ import annotations

import time

import pytest

from tests import api_fixtures
from tests.api_fixtures import EVSE_IDS, Running
from tests.driver_client import wait_until

running = api_fixtures.running

pytestmark = [pytest.mark.timeout(120), pytest.mark.integration]

SITE = {"name": "Depot", "limit_kw": 30, "station_ids": ["ap-001", "ap-002"]}


def test_operators_manage_sites_and_the_node_runs_them(running: Running) -> None:
    operator = running.operator()
    driver, _ = running.driver("dee@example.com")
    assert running.call("GET", "/api/v1/sites").status_code == 401
    assert running.call("GET", "/api/v1/sites", driver).status_code == 403
    assert running.call("PUT", "/api/v1/sites/depot", driver, SITE).status_code == 403

    created = running.call("PUT", "/api/v1/sites/depot", operator, SITE)
    assert created.status_code == 201, created.json
    assert created.json["limit_kw"] == 30
    assert created.json["station_ids"] == ["ap-001", "ap-002"]
    again = running.call("PUT", "/api/v1/sites/depot", operator, {**SITE, "limit_kw": 40})
    assert again.status_code == 200

    state = wait_until(lambda: running.system.sites.get("depot"), "the site actor running")
    assert state.limit_w in (30_000, 40_000)
    wait_until(
        lambda: (s := running.system.sites.get("depot")) is not None and s.limit_w == 40_000,
        "the new limit applied",
    )
    lowered = running.call("PUT", "/api/v1/sites/depot/limit", operator, {"limit_kw": 11})
    assert lowered.status_code == 200
    wait_until(
        lambda: (s := running.system.sites.get("depot")) is not None and s.limit_w == 11_000,
        "the lowered limit applied",
    )
    listed = running.call("GET", "/api/v1/sites", operator).json["sites"]
    assert [s["id"] for s in listed] == ["depot"]
    assert running.call("DELETE", "/api/v1/sites/depot", operator).status_code == 204
    wait_until(lambda: running.system.sites.get("depot") is None, "the site actor stopped")
    assert running.call("DELETE", "/api/v1/sites/depot", operator).status_code == 404
    assert (
        running.call("PUT", "/api/v1/sites/nowhere/limit", operator, {"limit_kw": 1}).status_code
        == 404
    )


@pytest.mark.parametrize(
    "body",
    [
        {"limit_kw": -1},
        {"limit_kw": 1e9},
        {"limit_kw": True},
        {"limit_kw": 10, "schedule": [{"from": "25:00", "limit_kw": 5}]},
        {
            "limit_kw": 10,
            "schedule": [{"from": "07:00", "limit_kw": 5}, {"from": "07:00", "limit_kw": 6}],
        },
        {"limit_kw": 10, "timezone": "Mars/Olympus"},
        {"limit_kw": 10, "station_ids": ["bad id!"]},
        {"limit_kw": 10, "evse_limits": {"ap-001.1": {"min_kw": 11, "max_kw": 7}}},
        {"limit_kw": 10, "name": ""},
    ],
)
def test_a_bad_site_is_refused_with_a_clear_error(running: Running, body: dict) -> None:
    operator = running.operator()
    refused = running.call("PUT", "/api/v1/sites/depot", operator, body)
    assert refused.status_code in (400, 422), refused.json
    assert refused.json["reason"]
    assert running.storage.sites.get("depot") is None


def test_a_driver_sets_the_departure_of_their_own_running_session_only(
    running: Running,
) -> None:
    alice, _ = running.driver("alice@example.com")
    bob, _ = running.driver("bob@example.com")
    started = running.call("POST", f"/api/v1/evses/{EVSE_IDS[0]}/start", alice)
    assert started.status_code == 201, started.json
    session = started.json["session_id"]
    soon = int(time.time() * 1000) + 3 * 3600 * 1000
    path = f"/api/v1/me/sessions/{session}/departure"

    assert running.call("PUT", path, bob, {"departure_at": soon}).status_code == 404
    assert running.call("PUT", path, alice, {"departure_at": 5}).status_code == 422
    far = soon + 3 * 24 * 3600 * 1000
    assert running.call("PUT", path, alice, {"departure_at": far}).status_code == 422
    done = running.call("PUT", path, alice, {"departure_at": soon})
    assert done.status_code == 200, done.json
    assert running.storage.sites.departures() == {session: soon}
    assert (
        running.call(
            "PUT", "/api/v1/me/sessions/nope/departure", alice, {"departure_at": soon}
        ).status_code
        == 404
    )
