"""Identity and station state at OCPP charge points, against a real ``smartcharge csms
--ocpp-port``: RFID idTags registered to driver accounts and badged at chargers, a
BootNotification Rejected, connector 0's status on every connector. The ``ocpp`` library's
ChargePoint over real WebSockets, a real Mosquitto, the driver and operator API over HTTPS
(``docs/ocpp.md``)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
from ocpp.v16 import call

from tests.db import child_env, database_for_test
from tests.driver_client import Api, EventStream, wait_until
from tests.support import REPO_ROOT
from tests.test_ocpp import (
    ADMIN,
    STATIONS,
    WAIT_S,
    Stack,
    Station,
    _boot,
    _evse_in,
    _now,
    _status,
    free_port,
    provision,
    running_stack,
)

pytestmark = [pytest.mark.integration, pytest.mark.needs_db, pytest.mark.timeout(120)]

CHARGE_POINTS = ("tag-1", "tag-2", "tag-3", "tag-4", "tag-5", "tag-6")


@pytest.fixture(scope="module")
def stack(module_mosquitto_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("ocpp-tags")
    http_port, https_port, ocpp_port = free_port(), free_port(), free_port()
    data_dir = tmp / "csms"
    with database_for_test(data_dir) as db_url:
        passwords = {cp: provision(data_dir, db_url, cp) for cp in CHARGE_POINTS}
        ports = (http_port, https_port, ocpp_port)
        extra = ("--max-sessions-per-driver", "1")
        with running_stack(module_mosquitto_url, tmp, data_dir, db_url, ports, extra) as result:
            result.passwords = passwords
            yield result


def _tags(api: Api, token: str) -> list[str]:
    status, body = api.get("/api/v1/me/tags", token=token)
    assert status == 200, body
    return [t["id_tag"] for t in body["tags"]]


def _register(api: Api, token: str, tag: str) -> tuple[int, Any]:
    return api.post("/api/v1/me/tags", {"id_tag": tag}, token=token)


def _driver_id(stack: Stack, tag: str) -> str:
    status, body = stack.api.get("/api/v1/id-tags?limit=500", token=stack.operator)
    assert status == 200, body
    found = [t["driver_id"] for t in body["tags"] if t["id_tag"].upper() == tag.upper()]
    assert len(found) == 1, body
    return found[0]


def _authorize(station: Station, tag: str) -> str:
    status: str = station.call(call.Authorize(id_tag=tag)).id_tag_info["status"]
    return status


def _badge(station: Station, connector: int, tag: str, meter: int = 5_000) -> Any:
    return station.call(
        call.StartTransaction(
            connector_id=connector, id_tag=tag, meter_start=meter, timestamp=_now()
        )
    )


def test_a_driver_registers_lists_and_removes_only_their_own_tags(stack: Stack) -> None:
    api = stack.api
    alice, bob = api.register("tags-alice@example.com"), api.register("tags-bob@example.com")
    assert _register(api, alice, "04A1B2C3")[0] == 201
    assert _register(api, alice, "04a1b2c3")[0] == 201  # the same tag again: still hers
    assert _tags(api, alice) == ["04A1B2C3"]
    # a tag belongs to one account: Bob can neither take it (in any case) nor remove it
    status, body = _register(api, bob, "04a1B2c3")
    assert status == 409, body
    assert "another account" in body["reason"]
    assert api.call("DELETE", "/api/v1/me/tags/04A1B2C3", token=bob)[0] == 404
    assert _tags(api, bob) == []
    # OCPP's IdToken: at most 20 characters
    for bad in ("x" * 21, "", "has space", "semi;colon", 42):
        assert _register(api, bob, bad)[0] == 422, bad  # type: ignore[arg-type]
    # a bounded number per driver
    for n in range(10):
        assert _register(api, bob, f"BOB-{n}")[0] == 201
    status, body = _register(api, bob, "BOB-10")
    assert status == 409, body
    assert len(_tags(api, bob)) == 10
    # writes only over HTTPS, reads only with a token
    assert api.post("/api/v1/me/tags", {"id_tag": "X1"}, token=bob, secure=False)[0] == 403
    assert api.get("/api/v1/me/tags", token="")[0] == 401
    # removing her own (any case)
    assert api.call("DELETE", "/api/v1/me/tags/04a1b2c3", token=alice)[0] == 204
    assert _tags(api, alice) == []
    assert _register(api, bob, "04A1B2C3")[0] == 409  # still at his limit, and now free


def test_operators_list_and_remove_any_tag_and_drivers_may_not(stack: Stack) -> None:
    api = stack.api
    carol = api.register("tags-carol@example.com")
    assert _register(api, carol, "CAROL-1")[0] == 201
    assert api.get("/api/v1/id-tags", token=carol)[0] == 403
    assert api.call("DELETE", "/api/v1/id-tags/CAROL-1", token=carol)[0] == 403
    driver = _driver_id(stack, "carol-1")
    assert driver
    assert api.call("DELETE", "/api/v1/id-tags/carol-1", token=stack.operator)[0] == 204
    assert api.call("DELETE", "/api/v1/id-tags/carol-1", token=stack.operator)[0] == 404
    assert _tags(api, carol) == []


def test_authorize_answers_by_the_tags_account(stack: Stack) -> None:
    api = stack.api
    dave = api.register("tags-dave@example.com")
    assert _register(api, dave, "DAVE-CARD")[0] == 201
    station = stack.station("tag-1")
    try:
        station.connect()
        _boot(station)
        assert _authorize(station, "dave-card") == "Accepted"  # case-insensitive, as OCPP says
        assert _authorize(station, "NOBODYS-CARD") == "Invalid"
        # an operator disables Dave's account: his card is Blocked
        driver = _driver_id(stack, "DAVE-CARD")
        status, body = api.post(f"/api/v1/users/{driver}/disable", token=stack.operator)
        assert status == 200, body
        assert _authorize(station, "DAVE-CARD") == "Blocked"
        started = _badge(station, 1, "DAVE-CARD")
        assert started.id_tag_info["status"] == "Blocked"
    finally:
        station.close()


def test_a_badge_start_is_the_drivers_session_in_history_and_live(stack: Stack) -> None:
    api = stack.api
    erin = api.register("tags-erin@example.com")
    assert _register(api, erin, "ERIN-CARD")[0] == 201
    mine = EventStream(api, "/api/v1/me/events", erin)
    station = stack.station("tag-2")
    try:
        station.connect()
        _boot(station, connectors=2)
        wait_until(lambda: _evse_in(api, "tag-2.2", "Available"), "tag-2.2 Available")
        _status(station, 1, "Preparing")
        start = call.StartTransaction(
            connector_id=1, id_tag="erin-card", meter_start=5_000, timestamp=_now()
        )
        started = station.call(start)
        assert started.id_tag_info["status"] == "Accepted"
        tx = started.transaction_id
        _status(station, 1, "Charging")
        # a charger that got no answer sends it again (OCPP 1.6 retries transaction
        # messages): the same transaction and answer, not a second start refused as
        # ConcurrentTx that would replace her running session
        again = station.call(start)
        assert (again.transaction_id, again.id_tag_info["status"]) == (tx, "Accepted")
        live = mine.wait_for(
            lambda kind, data: kind == "session" and data["id"] == "tag-2.1",
            "the badge session on Erin's live stream",
        )
        session_id = live["session_id"]

        def in_history(closed: bool) -> dict[str, Any] | None:
            status, body = api.get("/api/v1/me/sessions", token=erin)
            assert status == 200, body
            found = [s for s in body["sessions"] if s["id"] == session_id]
            return found[0] if found and (found[0]["ended_at"] is not None) == closed else None

        wait_until(lambda: in_history(closed=False), "the open session in Erin's history")
        # one running session per driver: a second badge on the other connector is refused
        second = _badge(station, 2, "ERIN-CARD")
        assert second.id_tag_info["status"] == "ConcurrentTx"
        stop = call.StopTransaction(meter_stop=9_500, timestamp=_now(), transaction_id=tx)
        assert station.call(stop).id_tag_info["status"] == "Accepted"
        _status(station, 1, "Finishing")
        row = wait_until(lambda: in_history(closed=True), "the closed session in Erin's history")
        assert row["energy_wh"] == pytest.approx(4_500)
    finally:
        mine.close()
        station.close()


def test_a_reserved_connector_starts_by_badge_only_for_its_holder(stack: Stack) -> None:
    api = stack.api
    frank, grace = api.register("tags-frank@example.com"), api.register("tags-grace@example.com")
    assert _register(api, frank, "FRANK-CARD")[0] == 201
    assert _register(api, grace, "GRACE-CARD")[0] == 201
    station = stack.station("tag-3")
    try:
        cp = station.connect()
        _boot(station)
        wait_until(lambda: _evse_in(api, "tag-3.1", "Available"), "tag-3.1 Available")
        status, body = api.post("/api/v1/evses/tag-3.1/reservation", token=frank)
        assert status == 201, body
        cp.reservations.get(timeout=WAIT_S)
        _status(station, 1, "Reserved")
        wait_until(lambda: _evse_in(api, "tag-3.1", "Reserved"), "tag-3.1 Reserved")
        assert _badge(station, 1, "GRACE-CARD").id_tag_info["status"] == "Invalid"
        _status(station, 1, "Reserved")  # the charger ended Grace's attempt
        started = _badge(station, 1, "FRANK-CARD")
        assert started.id_tag_info["status"] == "Accepted"
        _status(station, 1, "Charging")

        def franks() -> dict[str, Any] | None:
            view = _evse_in(api, "tag-3.1", "Charging")
            status, body = api.get("/api/v1/me/sessions", token=frank)
            open_ = [s for s in body["sessions"] if s["ended_at"] is None] if status == 200 else []
            return view if view and open_ and view["reservation"] is None else None

        wait_until(franks, "Frank's session on his reserved connector, the reservation used")
    finally:
        station.close()


def test_a_deleted_accounts_tags_are_unknown_and_free_again(stack: Stack) -> None:
    api = stack.api
    heidi = api.register("tags-heidi@example.com")
    assert _register(api, heidi, "HEIDI-CARD")[0] == 201
    station = stack.station("tag-4")
    try:
        station.connect()
        _boot(station)
        assert _authorize(station, "HEIDI-CARD") == "Accepted"
        subprocess.run(
            [*ADMIN, "delete-user", "tags-heidi@example.com", "--data-dir", str(stack.data_dir)],
            cwd=REPO_ROOT,
            env=child_env(stack.db_url),
            check=True,
            capture_output=True,
        )
        assert _authorize(station, "HEIDI-CARD") == "Invalid"
        ivan = api.register("tags-ivan@example.com")
        assert _register(api, ivan, "heidi-card")[0] == 201
    finally:
        station.close()


def test_a_charge_point_revoked_since_its_handshake_is_rejected_at_boot(stack: Stack) -> None:
    station = stack.station("tag-5")
    try:
        station.connect()
        _boot(station)
        wait_until(lambda: _evse_in(stack.api, "tag-5.1", "Available"), "tag-5.1 Available")
        subprocess.run(
            [*STATIONS, "--data-dir", str(stack.data_dir), "revoke", "tag-5"],
            cwd=REPO_ROOT,
            env=child_env(stack.db_url),
            check=True,
            capture_output=True,
        )
        booted = station.call(
            call.BootNotification(charge_point_model="m", charge_point_vendor="v")
        )
        assert booted.status == "Rejected"
        assert booted.interval > 0
        assert station.ws is not None
        ws = station.ws
        station.run(ws.wait_closed())
        assert ws.close_code == 1008
        wait_until(lambda: _evse_in(stack.api, "tag-5.1", "Offline"), "tag-5.1 Offline")
    finally:
        station.close()


def test_connector_0_down_shows_on_every_evse_and_up_restores_each_ones_own(
    stack: Stack,
) -> None:
    api = stack.api
    station = stack.station("tag-6")
    try:
        station.connect()
        _boot(station, connectors=2)
        _status(station, 2, "Faulted")  # its own fault
        wait_until(lambda: _evse_in(api, "tag-6.2", "Faulted"), "tag-6.2 Faulted")
        wait_until(lambda: _evse_in(api, "tag-6.1", "Available"), "tag-6.1 Available")
        _status(station, 0, "Unavailable")
        wait_until(lambda: _evse_in(api, "tag-6.1", "Unavailable"), "tag-6.1 Unavailable")
        wait_until(lambda: _evse_in(api, "tag-6.2", "Unavailable"), "tag-6.2 Unavailable")
        # a start on it is refused meanwhile
        driver = api.register("tags-judy@example.com")
        status, body = api.post("/api/v1/evses/tag-6.1/start", token=driver)
        assert status == 409, body
        _status(station, 0, "Available")
        wait_until(lambda: _evse_in(api, "tag-6.1", "Available"), "tag-6.1 Available again")
        wait_until(lambda: _evse_in(api, "tag-6.2", "Faulted"), "tag-6.2 its own Faulted again")
    finally:
        station.close()
