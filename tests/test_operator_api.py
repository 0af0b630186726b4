"""The operator pages' API (issue 13, point 7): every session with filters, paging and a CSV
export that no spreadsheet runs as formulas; driver accounts, disabled and enabled for real
(no login, no refresh, no write); a station's recent events. Operators only."""

from __future__ import annotations

import csv
import io
import time
from types import SimpleNamespace
from typing import Any

import pytest

from storage import Role
from tests import api_fixtures
from tests.api_fixtures import EVSE_IDS, PASSWORD, Running
from tests.driver_client import wait_until

running = api_fixtures.running

pytestmark = [pytest.mark.integration, pytest.mark.needs_db, pytest.mark.timeout(120)]

T0 = 1_764_547_200_000  # 2025-12-01T00:00:00Z
HOUR = 3_600_000
OPERATOR_PATHS = (
    "/api/v1/sessions",
    "/api/v1/sessions.csv",
    "/api/v1/users",
    "/api/v1/stations/ap-001/events",
)


def seed_sessions(running: Running, driver_id: str) -> None:
    """Six sessions an hour apart: ap-001.1 ... on two stations, the newest still open."""
    sessions = running.storage.sessions
    for n in range(6):
        station = "ap-001" if n % 2 == 0 else "ap-002"
        sid = f"s{n}"
        sessions.open(
            sid,
            evse_id=f"{station}.{1 + n % 3 // 2}",
            station_id=station,
            started_at=T0 + n * HOUR,
            driver_id=driver_id if n < 4 else None,
        )
        if n < 5:
            sessions.close(sid, T0 + n * HOUR + 1800_000, 1000.0 * (n + 1), "EVDisconnected")


def ids(result: object) -> list[str]:
    return [s["id"] for s in result.json["sessions"]]  # type: ignore[attr-defined]


def test_operators_alone_read_the_operator_endpoints(running: Running) -> None:
    driver, _ = running.driver("dee@example.com")
    for path in OPERATOR_PATHS:
        assert running.call("GET", path).status_code == 401, path
        refused = running.call("GET", path, driver)
        assert refused.status_code == 403, path
        assert refused.json["reason"] == "this call is for operators"
    assert running.call("POST", "/api/v1/users/x/disable", driver).status_code == 403


def test_sessions_are_filtered_and_paged_newest_first(running: Running) -> None:
    _, alice = running.driver("alice@example.com")
    seed_sessions(running, alice)
    operator = running.operator()

    def get(query: str) -> list[str]:
        result = running.call("GET", "/api/v1/sessions", operator, query_string=query)
        assert result.status_code == 200, result.json
        return ids(result)

    assert get("") == ["s5", "s4", "s3", "s2", "s1", "s0"]
    assert get("station=ap-002") == ["s5", "s3", "s1"]
    assert get("evse=ap-001.1") == ["s4", "s0"]
    assert get("driver=alice@example.com") == ["s3", "s2", "s1", "s0"]
    assert get(f"driver={alice}") == ["s3", "s2", "s1", "s0"]
    assert get("driver=nobody@example.com") == []
    assert get("status=open") == ["s5"]
    assert get("status=closed&station=ap-001") == ["s4", "s2", "s0"]
    assert get(f"from={T0 + 2 * HOUR}&to={T0 + 4 * HOUR}") == ["s3", "s2"]
    assert get("from=2025-12-01T03:00:00Z") == ["s5", "s4", "s3"]
    first = running.call("GET", "/api/v1/sessions", operator, query_string="limit=4").json
    assert [s["id"] for s in first["sessions"]] == ["s5", "s4", "s3", "s2"]
    assert first["sessions"][2]["driver_email"] == "alice@example.com"
    assert first["sessions"][0]["open"] is True
    assert first["sessions"][0]["driver_id"] is None
    rest = get(f"limit=4&before={first['next']}")
    assert rest == ["s1", "s0"]
    last = running.call(
        "GET", "/api/v1/sessions", operator, query_string=f"limit=4&before={first['next']}"
    )
    assert last.json["next"] is None
    for bad in ("status=maybe", "from=yesterday", "station=a.b", "before=xyz", "limit=0"):
        refused = running.call("GET", "/api/v1/sessions", operator, query_string=bad)
        assert refused.status_code == 400, bad
        assert set(refused.json) == {"status", "title", "reason"}


def test_the_csv_export_quotes_and_defuses_formulas(running: Running) -> None:
    evil = running.storage.users.create("=hyperlink(1)@example.com", "x", Role.DRIVER)
    sessions = running.storage.sessions
    sessions.open("a", evse_id="ap-001.1", station_id="ap-001", started_at=T0, driver_id=evil.id)
    sessions.close("a", T0 + 90_000, 1234.0, '-2+3,"quoted"')
    sessions.open("b", evse_id="ap-001.2", station_id="ap-001", started_at=T0 + HOUR)
    sessions.close("b", T0 + HOUR + 1000, 10.0, "@SUM(A1)")
    sessions.open("c", evse_id="ap-002.1", station_id="ap-002", started_at=T0 + 2 * HOUR)
    operator = running.operator()

    result = running.call("GET", "/api/v1/sessions.csv", operator, query_string="station=ap-001")
    assert result.status_code == 200
    assert result.headers["Content-Type"].startswith("text/csv")
    assert "attachment" in result.headers["Content-Disposition"]
    assert result.headers["X-Truncated"] == "false"
    rows = list(csv.reader(io.StringIO(result.text)))
    assert rows[0][:3] == ["session_id", "station_id", "evse_id"]
    by_id = {row[0]: dict(zip(rows[0], row, strict=True)) for row in rows[1:]}
    assert set(by_id) == {"a", "b"}
    assert by_id["a"]["driver_email"] == "'=hyperlink(1)@example.com"
    assert by_id["a"]["end_reason"] == '\'-2+3,"quoted"'  # one cell, quotes and comma kept
    assert by_id["a"]["started_at"] == "2025-12-01T00:00:00Z"
    assert by_id["a"]["duration_s"] == "90"
    assert by_id["a"]["energy_kwh"] == "1.234"  # Wh to kWh
    assert by_id["b"]["end_reason"] == "'@SUM(A1)"
    assert by_id["b"]["driver_email"] == ""
    assert '"\'-2+3,""quoted"""' in result.text  # RFC 4180 quoting on the wire
    assert result.text.endswith("\r\n")

    capped = running.call("GET", "/api/v1/sessions.csv", operator, query_string="limit=2")
    assert [row[0] for row in csv.reader(io.StringIO(capped.text))][1:] == ["c", "b"]
    assert capped.headers["X-Truncated"] == "true"
    rest = running.call(
        "GET",
        "/api/v1/sessions.csv",
        operator,
        query_string=f"before={capped.headers['X-Next-Before']}",
    )
    assert [row[0] for row in csv.reader(io.StringIO(rest.text))][1:] == ["a"]


def test_a_disabled_driver_cannot_log_in_refresh_or_write_until_enabled(
    running: Running,
) -> None:
    login = {"email": "carol@example.com", "password": PASSWORD}
    registered = running.call("POST", "/api/v1/auth/register", body=login)
    token, refresh = registered.json["access_token"], registered.json["refresh_token"]
    carol = running.auth.verify(token).user_id
    running.driver("dave@example.com")
    running.storage.sessions.open("x", evse_id=EVSE_IDS[0], station_id="ap-001", driver_id=carol)
    operator = running.operator()

    listed = running.call("GET", "/api/v1/users", operator).json
    emails = [u["email"] for u in listed["users"]]
    assert sorted(emails) == ["carol@example.com", "dave@example.com"]  # no operator
    found = running.call("GET", "/api/v1/users", operator, query_string="q=CAROL").json
    assert found["users"] == [
        {
            "id": carol,
            "email": "carol@example.com",
            "created_at": found["users"][0]["created_at"],
            "confirmed": True,
            "disabled": False,
            "disabled_at": None,
            "sessions": 1,
        }
    ]
    page = running.call("GET", "/api/v1/users", operator, query_string="limit=1").json
    after = running.call(
        "GET", "/api/v1/users", operator, query_string=f"limit=1&before={page['next']}"
    ).json
    assert [u["email"] for u in page["users"] + after["users"]] == emails
    assert after["next"] is None

    disabled = running.call("POST", f"/api/v1/users/{carol}/disable", operator)
    assert disabled.status_code == 200, disabled.json
    assert disabled.json["disabled"] is True
    assert running.call("POST", "/api/v1/auth/login", body=login).status_code == 401
    assert (
        running.call("POST", "/api/v1/auth/refresh", body={"refresh_token": refresh}).status_code
        == 401
    )
    write = running.call("POST", f"/api/v1/evses/{EVSE_IDS[1]}/reservation", token)
    assert write.status_code == 401, write.json
    again = running.call("POST", f"/api/v1/users/{carol}/disable", operator)
    assert again.status_code == 200
    assert again.json["disabled"] is True

    enabled = running.call("POST", f"/api/v1/users/{carol}/enable", operator)
    assert enabled.status_code == 200
    assert enabled.json["disabled"] is False
    relogin = running.call("POST", "/api/v1/auth/login", body=login)
    assert relogin.status_code == 200
    reserve = running.call(
        "POST", f"/api/v1/evses/{EVSE_IDS[1]}/reservation", relogin.json["access_token"]
    )
    assert reserve.status_code == 201, reserve.json

    operator_id = running.auth.verify(operator).user_id
    other = running.auth.create_user("boss@example.com", PASSWORD, "operator").user_id
    for target in (operator_id, other):
        refused = running.call("POST", f"/api/v1/users/{target}/disable", operator)
        assert refused.status_code == 403, target
    assert running.storage.users.get(other).disabled_at is None  # type: ignore[union-attr]
    assert running.call("POST", "/api/v1/users/nobody/disable", operator).status_code == 404


def charge_and_stop(running: Running, evse_id: str) -> str:
    driver, _ = running.driver("erin@example.com")
    started = running.call("POST", f"/api/v1/evses/{evse_id}/start", driver)
    assert started.status_code == 201, started.json
    running.watcher.wait_for(running.watcher.status_is(evse_id, "Charging"), "Charging")
    stopped = running.call("POST", f"/api/v1/evses/{evse_id}/stop", driver)
    assert stopped.status_code == 200, stopped.json
    session_id: str = started.json["session_id"]
    wait_until(
        lambda: (s := running.storage.sessions.get(session_id)) and s.ended_at is not None,
        "the session closed in storage",
    )
    return session_id


def station_events_show_the_session(running: Running) -> None:
    evse_id = EVSE_IDS[0]
    station = evse_id.split(".")[0]
    session_id = charge_and_stop(running, evse_id)
    operator = running.operator()

    def events() -> list[dict[str, object]] | None:
        result = running.call("GET", f"/api/v1/stations/{station}/events", operator)
        assert result.status_code == 200, result.json
        found: list[dict[str, object]] = result.json["events"]
        return found if any(e["status"] == "Charging" for e in found) else None

    found = wait_until(events, "the Charging status change recorded")
    kinds = {(e["kind"], e["session_id"]) for e in found}
    assert ("session_started", session_id) in kinds
    assert ("session_ended", session_id) in kinds
    assert all(str(e["evse_id"]).startswith(f"{station}.") for e in found)
    times = [e["at"] for e in found]
    assert times == sorted(times, reverse=True)
    listed = running.call("GET", "/api/v1/sessions", operator, query_string=f"evse={evse_id}")
    assert ids(listed) == [session_id]
    unknown = running.call("GET", "/api/v1/stations/nowhere/events", operator)
    assert unknown.status_code == 404


def test_a_station_page_lists_its_status_changes_and_sessions(running: Running) -> None:
    station_events_show_the_session(running)


@pytest.mark.remote_gateway
def test_a_gateway_apart_from_the_node_serves_the_same_events(running: Running) -> None:
    station_events_show_the_session(running)


class AlertLogStandIn:
    """``storage.alerts``'s ``page`` (the operators' alert log, its own branch), for a
    storage that has no alert log yet."""

    def __init__(self) -> None:
        self.alerts: list[Any] = []

    def add(self, kind: str, severity: str, message: str, *, at: int, **where: Any) -> None:
        fields = {"station_id": None, "evse_id": None, **where}
        self.alerts.append(
            SimpleNamespace(kind=kind, severity=severity, message=message, at=at, **fields)
        )

    def page(self, *, limit: int = 50, station_id: str | None = None, **_: Any) -> list[Any]:
        found = [a for a in self.alerts if station_id is None or a.station_id == station_id]
        return sorted(found, key=lambda a: a.at, reverse=True)[:limit]


def test_a_station_page_lists_the_alerts_of_that_station_only(running: Running) -> None:
    if not hasattr(running.storage, "alerts"):
        running.storage.alerts = AlertLogStandIn()  # type: ignore[attr-defined]
    log = running.storage.alerts  # type: ignore[attr-defined]
    now = int(time.time() * 1000)
    log.add("station_offline", "bad", "ap-001 went offline", at=now, station_id="ap-001")
    log.add("station_offline", "bad", "ap-002 went offline", at=now, station_id="ap-002")
    operator = running.operator()
    events = running.call("GET", "/api/v1/stations/ap-001/events", operator).json["events"]
    alerts = [e for e in events if e["kind"] == "alert"]
    shown = {(a["message"], a["severity"]) for a in alerts}
    assert ("ap-001 went offline", "bad") in shown  # the node's own alerts may be there too
    assert not any("ap-002" in message for message, _ in shown)
