"""Rules a cheating driver cannot get round (issue 12, point 3), over the in-process CSMS:
a reservation holds for its holder only, a driver holds one reservation and a limited number
of sessions, and the live ``info`` round trip is rate limited. Operators are exempt.

Tokens: tests/test_driver_rules_tokens.py; what public views show: test_driver_rules_views.py.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from actors.driver_quota import DriverQuota
from actors.fleet_view import FleetView
from actors.session_owners import SessionOwner, SessionOwners
from gateway.app import INFO_LIMIT
from gateway.cli import build_parser
from storage.errors import Conflict
from tests import api_fixtures
from tests.api_fixtures import EVSE_IDS, Running
from tests.security_support import reason_of

running = api_fixtures.running

pytestmark = [pytest.mark.timeout(120)]

EVSE, OTHER = EVSE_IDS[0], EVSE_IDS[1]


# -- 1. a reserved EVSE starts only for its holder -----------------------------------------


@pytest.mark.integration
@pytest.mark.needs_db
def test_another_drivers_start_on_a_reserved_evse_is_refused_and_the_reservation_holds(
    running: Running,
) -> None:
    alice, _ = running.driver("alice@example.com")
    bob, _ = running.driver("bob@example.com")
    reserved = running.call("POST", f"/api/v1/evses/{EVSE}/reservation", alice)
    assert reserved.status_code == 201, reserved.json
    running.watcher.wait_for(running.watcher.status_is(EVSE, "Reserved"), "Reserved")

    started = running.call("POST", f"/api/v1/evses/{EVSE}/start", bob)

    assert started.status_code == 409, started.json
    assert "reserved by another driver" in reason_of(started)
    held = running.system.charging.reservation(EVSE)  # asks the reservation actor: after
    assert held is not None
    assert held.id == reserved.json["id"]
    row = running.storage.reservations.get(reserved.json["id"])
    assert row is not None
    assert row.outcome is None
    # And the holder can still use it.
    mine = running.call("POST", f"/api/v1/evses/{EVSE}/start", alice)
    assert mine.status_code == 201, mine.json
    running.watcher.wait_for(running.watcher.status_is(EVSE, "Charging"), "Alice charging")


# -- 2. one reservation, a limited number of sessions --------------------------------------


@pytest.mark.integration
@pytest.mark.needs_db
def test_a_driver_holds_one_reservation_and_an_operator_is_not_limited(running: Running) -> None:
    alice, _ = running.driver("alice@example.com")
    operator = running.operator()
    first = running.call("POST", f"/api/v1/evses/{EVSE}/reservation", alice)
    assert first.status_code == 201, first.json

    second = running.call("POST", f"/api/v1/evses/{OTHER}/reservation", alice)

    assert second.status_code == 409, second.json
    assert "already hold a reservation" in reason_of(second)
    assert running.system.charging.reservation(OTHER) is None
    for evse in EVSE_IDS[1:3]:
        by_operator = running.call("POST", f"/api/v1/evses/{evse}/reservation", operator)
        assert by_operator.status_code == 201, by_operator.json
    # Cancelling frees the driver's one reservation.
    assert running.call("DELETE", f"/api/v1/evses/{EVSE}/reservation", alice).status_code == 204
    again = running.call("POST", f"/api/v1/evses/{EVSE_IDS[3]}/reservation", alice)
    assert again.status_code == 201, again.json


@pytest.mark.integration
@pytest.mark.needs_db
def test_a_driver_runs_one_session_by_default_and_may_start_again_after_stopping(
    running: Running,
) -> None:
    alice, _ = running.driver("alice@example.com")
    started = running.call("POST", f"/api/v1/evses/{EVSE}/start", alice)
    assert started.status_code == 201, started.json
    running.watcher.wait_for(running.watcher.status_is(EVSE, "Charging"), "Alice charging")

    second = running.call("POST", f"/api/v1/evses/{OTHER}/start", alice)

    assert second.status_code == 409, second.json
    assert "1 at once" in reason_of(second)
    assert running.system.charging.quota.running_sessions(running.auth.verify(alice).user_id) == 1
    assert running.watcher.state(OTHER).session_id is None
    stopped = running.call("POST", f"/api/v1/evses/{EVSE}/stop", alice)
    assert stopped.status_code == 200, stopped.json
    running.watcher.wait_for(
        lambda: running.watcher.state(EVSE).status not in ("Charging", "Preparing"), "stopped"
    )
    again = running.call("POST", f"/api/v1/evses/{OTHER}/start", alice)
    assert again.status_code == 201, again.json


@pytest.mark.integration
@pytest.mark.needs_db
def test_concurrent_starts_of_one_driver_run_one_session_and_an_operator_runs_many(
    running: Running,
) -> None:
    alice, _ = running.driver("alice@example.com")
    operator = running.operator()

    def start(evse: str, token: str) -> int:
        return running.call("POST", f"/api/v1/evses/{evse}/start", token).status_code

    with ThreadPoolExecutor(len(EVSE_IDS)) as pool:
        statuses = list(pool.map(start, EVSE_IDS, [alice] * len(EVSE_IDS)))

    assert sorted(statuses) == [201, 409, 409, 409], statuses
    free = [evse for evse, status in zip(EVSE_IDS, statuses, strict=True) if status == 409]
    with ThreadPoolExecutor(len(free)) as pool:
        by_operator = list(pool.map(start, free, [operator] * len(free)))
    assert by_operator == [201] * len(free)


# -- 4. the live info round trip is rate limited per user -------------------------------------


@pytest.mark.integration
@pytest.mark.needs_db
def test_live_info_beyond_the_per_user_limit_is_refused_with_429_and_retry_after(
    running: Running,
) -> None:
    alice, _ = running.driver("alice@example.com")
    bob, _ = running.driver("bob@example.com")
    limit, window_s = INFO_LIMIT
    for _ in range(limit):
        answered = running.call("GET", f"/api/v1/evses/{EVSE}/info", alice)
        assert answered.status_code == 200, answered.json

    refused = running.call("GET", f"/api/v1/evses/{EVSE}/info", alice)

    assert refused.status_code == 429, refused.json
    assert "too many live info requests" in reason_of(refused)
    assert 1 <= int(refused.headers["Retry-After"]) <= window_s
    assert running.call("GET", f"/api/v1/evses/{EVSE}/info", bob).status_code == 200


# -- the quota on its own, and its flag -------------------------------------------------------


def test_the_quota_counts_from_memory_with_the_configured_limit() -> None:
    now = [0.0]
    view, owners = FleetView(clock=lambda: now[0]), SessionOwners(monotonic=lambda: now[0])
    quota = DriverQuota(view, owners, max_sessions=2, monotonic=lambda: now[0], settle_s=30)
    for n in (1, 2):
        quota.admit(
            SessionOwner(session_id=f"s{n}", driver_id="d", evse_id=f"e{n}"), operator=False
        )
    with pytest.raises(Conflict, match="2 at once"):
        quota.admit(SessionOwner(session_id="s3", driver_id="d", evse_id="e3"), operator=False)
    quota.admit(SessionOwner(session_id="s4", driver_id="ops", evse_id="e4"), operator=True)
    assert quota.running_sessions("d") == 2
    owners.forget("s1")  # a start that failed
    assert quota.running_sessions("d") == 1
    now[0] = 31.0  # the view never showed s2 running: it stops counting once settled
    assert quota.running_sessions("d") == 0


def test_the_cli_flag_sets_the_session_limit_and_defaults_to_one() -> None:
    parser = build_parser()
    assert parser.parse_args(["csms"]).max_sessions_per_driver == 1
    given = parser.parse_args(["csms", "--max-sessions-per-driver", "3"])
    assert given.max_sessions_per_driver == 3
    with pytest.raises(SystemExit):
        parser.parse_args(["csms", "--max-sessions-per-driver", "0"])
