"""A driver's whole journey over real sockets: gunicorn serving HTTP and HTTPS, a real
Mosquitto, simulated stations in their own process."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.broker_probe import free_port
from tests.db import database_for_test
from tests.driver_client import Api, EventStream, csms_process, wait_until
from tests.support import FleetProcess

pytestmark = [pytest.mark.integration, pytest.mark.needs_db, pytest.mark.timeout(180)]


@pytest.fixture
def api(mosquitto_url: str, tmp_path: Path) -> Iterator[Api]:
    http_port, https_port = free_port(), free_port()
    data_dir = tmp_path / "csms"
    with (
        database_for_test(data_dir) as db_url,
        csms_process(
            mosquitto_url, data_dir, http_port, https_port, tmp_path / "csms.log", db_url=db_url
        ),
        FleetProcess(mosquitto_url, tmp_path / "fleet", stations=3, evses=2, speed=60, prefix="dr"),
    ):
        cert = data_dir / "tls" / "cert.pem"
        wait_until(cert.exists, "the self-signed certificate")
        client = Api(http_port, https_port, cert)

        def all_available() -> bool:
            status, body = client.get("/api/v1/stations", secure=False)
            evses = [e for s in body["stations"] for e in s["evses"]] if status == 200 else []
            return len(evses) == 6 and all(e["status"] == "Available" for e in evses)

        wait_until(all_available, "6 EVSEs Available over HTTP")
        yield client


def test_driver_registers_reserves_charges_watches_stops_and_finds_the_session(api: Api) -> None:
    api.token = api.register("alice@example.com")
    status, body = api.post(
        "/api/v1/auth/login", {"email": "alice@example.com", "password": "correct horse battery"}
    )
    assert status == 200
    assert body["token_type"] == "Bearer"
    api.token = body["access_token"]

    # nearest available EVSE (public read over plain HTTP)
    status, body = api.get(
        "/api/v1/evses/nearest?lat=44.4949&lon=11.3426&limit=3&available=true",
        token="",
        secure=False,
    )
    assert status == 200
    distances = [e["distance_km"] for e in body["evses"]]
    assert distances == sorted(distances)
    evse = body["evses"][0]["id"]

    events = EventStream(api, "/api/v1/me/events", api.token)
    try:
        # reserve: the count is visible in the public view
        status, body = api.post(f"/api/v1/evses/{evse}/reservation")
        assert status == 201, body
        assert body["expires_at"] > 0
        view = wait_until(lambda: _evse_if(api, evse, "Reserved"), "the EVSE to show Reserved")
        assert 0 < view["reservation"]["remaining_s"] <= 900

        # start: charging, with SoC and energy rising live
        status, body = api.post(f"/api/v1/evses/{evse}/start", {"target_soc": 100})
        assert status == 201, body
        session_id = body["session_id"]
        first = events.wait_for(
            lambda k, d: (
                k == "session" and d["status"] == "Charging" and d["session_energy_wh"] > 0
            ),
            "charging",
        )
        events.wait_for(
            lambda k, d: (
                k == "session"
                and d["session_id"] == session_id
                and d["session_energy_wh"] > first["session_energy_wh"]
                and d["soc"] > first["soc"]
            ),
            "SoC and energy rising",
        )
        assert _public_evse(api, evse)["reservation"] is None, "the reservation was used"

        # stop, then the session is in the history with its energy
        status, body = api.post(f"/api/v1/evses/{evse}/stop")
        assert status == 200, body
        ended = events.wait_for(
            lambda k, d: k == "notification" and d["kind"] == "session_ended",
            "the session-ended notification",
        )
        assert ended["data"]["session_id"] == session_id
    finally:
        events.close()

    sessions = wait_until(lambda: _closed_sessions(api), "the session in /me/sessions")
    assert sessions[0]["id"] == session_id
    assert sessions[0]["evse_id"] == evse
    assert sessions[0]["energy_wh"] > 0
    assert sessions[0]["end_reason"] == "Remote"
    assert sessions[0]["peak_power_w"] > 0


def test_writes_over_plain_http_are_refused_with_the_https_url(api: Api) -> None:
    status, body = api.post(
        "/api/v1/auth/login", {"email": "a@b.co", "password": "x" * 12}, secure=False
    )
    assert status == 403
    assert f"https://127.0.0.1:{api.https_port}/api/v1/auth/login" in body["reason"]
    status, body = api.get("/api/v1/me/sessions", secure=False, token="anything")
    assert status == 403


def _public_evse(api: Api, evse: str) -> dict[str, Any]:
    status, body = api.get(f"/api/v1/evses/{evse}", secure=False, token="")
    assert status == 200
    return dict(body)


def _evse_if(api: Api, evse: str, status: str) -> dict[str, Any] | None:
    view = _public_evse(api, evse)
    return view if view["status"] == status else None


def _closed_sessions(api: Api) -> list[dict[str, Any]] | None:
    status, body = api.get("/api/v1/me/sessions")
    assert status == 200
    sessions = [s for s in body["sessions"] if not s["open"]]
    return sessions or None
