"""The Falcon gateway (gateway/app.py, gateway/views.py) through falcon's TestClient: health,
the stations and EVSEs it lists, and the age of their last report.

The CSMS is a real :class:`CsmsSystem` that is never started: its :class:`FleetView` is filled
directly, as the supervisor would fill it (tests/gateway_support.py).
"""

from __future__ import annotations

from dataclasses import replace

import falcon
import falcon.testing

from actors.system import CsmsConfig, CsmsSystem
from gateway.app import create_app
from protocol import EvseStatus
from tests import gateway_support
from tests.gateway_support import FakeClock, evse, station

client = gateway_support.client
clock = gateway_support.clock
csms = gateway_support.csms


STATION_KEYS = {"id", "name", "lat", "lon", "online", "evses"}
EVSE_KEYS = {
    "id",
    "station_id",
    "status",
    "soc",
    "power_w",
    "energy_wh",
    "max_power_w",
    "connector",
    "session",
    "reservation_id",
    "reservation",
    "maintenance",
    "maintenance_pending",
    "last_report_age_s",
    "alert",
}
OCPP_STATUSES = {s.value for s in EvseStatus}


# -- health ----------------------------------------------------------------------------------


def test_healthz_answers_ok_with_the_fleet_size(client: falcon.testing.TestClient) -> None:
    result = client.simulate_get("/healthz")

    assert result.status_code == 200
    assert result.json == {"status": "ok", "mqtt_connected": None, "stations": 2, "evses": 4}


def test_healthz_reports_whether_mqtt_is_connected(csms: CsmsSystem) -> None:
    client = falcon.testing.TestClient(create_app(csms, mqtt_connected=csms.mqtt_connected))
    assert client.simulate_get("/healthz").json["mqtt_connected"] is False

    csms.mqtt_connected.set()

    assert client.simulate_get("/healthz").json["mqtt_connected"] is True


# -- stations --------------------------------------------------------------------------------


def test_stations_lists_every_station_sorted_by_id_with_its_evses(
    client: falcon.testing.TestClient,
) -> None:
    result = client.simulate_get("/api/v1/stations")

    assert result.status_code == 200
    assert result.headers["content-type"].startswith("application/json")
    body = result.json
    assert set(body) == {"stations"}
    assert [s["id"] for s in body["stations"]] == ["st-001", "st-002"]
    first, second = body["stations"]
    assert set(first) == STATION_KEYS
    assert first["name"] == "Station st-001"
    assert (first["lat"], first["lon"]) == (52.52, 13.405)
    assert first["online"] is True
    assert second["online"] is False
    assert [e["id"] for e in first["evses"]] == ["st-001.1", "st-001.2"]
    assert [e["id"] for e in second["evses"]] == ["st-002.1", "st-002.2"]


def test_every_evse_has_the_documented_keys_and_an_ocpp_status(
    client: falcon.testing.TestClient,
) -> None:
    stations = client.simulate_get("/api/v1/stations").json["stations"]
    evses = [e for s in stations for e in s["evses"]]

    assert len(evses) == 4
    for e in evses:
        assert set(e) == EVSE_KEYS, e["id"]
        assert e["status"] in OCPP_STATUSES
    assert [e["status"] for e in evses] == ["Available", "Charging", "Offline", "Faulted"]


def test_an_idle_evse_reads_as_plain_json_values(client: falcon.testing.TestClient) -> None:
    idle = client.simulate_get("/api/v1/evses/st-001.1").json

    assert idle == {
        "id": "st-001.1",
        "station_id": "st-001",
        "status": "Available",
        "soc": None,
        "power_w": 0.0,
        "energy_wh": 0.0,
        "max_power_w": 11_000.0,
        "connector": "Type2",
        "session": None,
        "reservation_id": None,
        "reservation": None,
        "maintenance": False,
        "maintenance_pending": False,
        "last_report_age_s": 0.0,
        "alert": None,
    }


def test_a_charging_evse_shows_its_rounded_meter_values_and_its_session(
    client: falcon.testing.TestClient,
) -> None:
    charging = client.simulate_get("/api/v1/evses/st-001.2").json

    assert charging["status"] == "Charging"
    assert charging["soc"] == 41.23
    assert charging["power_w"] == 10_987.7
    assert charging["energy_wh"] == 1234.6
    assert charging["session"] == {
        "id": None,  # an anonymous read names no driver's session (tests/test_driver_rules_views)
        "open": True,
        "energy_wh": 456.8,
        "target_soc": 80.0,
        "stop_reason": None,
    }


def test_an_evse_alert_is_shown(client: falcon.testing.TestClient) -> None:
    assert client.simulate_get("/api/v1/evses/st-002.2").json["alert"] == "restarted too often"


def test_an_evse_reads_the_same_alone_and_inside_its_station(
    client: falcon.testing.TestClient,
) -> None:
    stations = client.simulate_get("/api/v1/stations").json["stations"]

    for s in stations:
        for inside in s["evses"]:
            alone = client.simulate_get(f"/api/v1/evses/{inside['id']}")
            assert alone.status_code == 200
            assert alone.json == inside


def test_one_station_reads_the_same_as_in_the_list(client: falcon.testing.TestClient) -> None:
    listed = client.simulate_get("/api/v1/stations").json["stations"][0]

    result = client.simulate_get("/api/v1/stations/st-001")

    assert result.status_code == 200
    assert result.json == listed


def test_a_station_whose_evses_have_not_reported_lists_no_evses(
    csms: CsmsSystem, client: falcon.testing.TestClient
) -> None:
    csms.view.put_station(station("st-003"), online=True)

    result = client.simulate_get("/api/v1/stations/st-003")

    assert result.status_code == 200
    assert result.json["evses"] == []


def test_a_station_that_no_longer_lists_an_evse_drops_it_from_the_view(
    csms: CsmsSystem, client: falcon.testing.TestClient
) -> None:
    csms.view.put_station(station("st-004", evses=2), online=True)
    for n in (1, 2):
        csms.view.put_evse(evse(f"st-004.{n}", "st-004", EvseStatus.AVAILABLE))
    csms.view.put_station(station("st-004", evses=1), online=True)
    assert client.simulate_get("/api/v1/evses/st-004.2").status_code == 404
    csms.view.put_evse(evse("st-004.2", "st-004", EvseStatus.CHARGING))  # its stopped actor's

    assert client.simulate_get("/api/v1/evses/st-004.2").status_code == 404
    assert [e["id"] for e in client.simulate_get("/api/v1/stations/st-004").json["evses"]] == [
        "st-004.1"
    ]


def test_an_empty_fleet_lists_no_stations() -> None:
    client = falcon.testing.TestClient(create_app(CsmsSystem(CsmsConfig())))

    assert client.simulate_get("/api/v1/stations").json == {"stations": []}


def test_a_new_report_replaces_what_the_gateway_shows(
    csms: CsmsSystem, client: falcon.testing.TestClient
) -> None:
    before = csms.view.evse("st-001.1")
    assert before is not None
    csms.view.put_evse(replace(before.state, status=EvseStatus.PREPARING))

    assert client.simulate_get("/api/v1/evses/st-001.1").json["status"] == "Preparing"


def test_the_fleet_listing_never_serves_a_change_late(
    csms: CsmsSystem, client: falcon.testing.TestClient
) -> None:
    def status_in_listing() -> str:
        stations = client.simulate_get("/api/v1/stations").json["stations"]
        return next(e["status"] for s in stations for e in s["evses"] if e["id"] == "st-001.1")

    assert status_in_listing() == "Available"
    assert status_in_listing() == "Available"  # served again (from its cache)
    before = csms.view.evse("st-001.1")
    assert before is not None
    csms.view.put_evse(replace(before.state, status=EvseStatus.PREPARING))

    assert status_in_listing() == "Preparing"


# -- report age ------------------------------------------------------------------------------


def test_last_report_age_grows_with_the_clock(
    clock: FakeClock, client: falcon.testing.TestClient
) -> None:
    assert client.simulate_get("/api/v1/evses/st-001.1").json["last_report_age_s"] == 0.0

    clock.advance(12.34)

    assert client.simulate_get("/api/v1/evses/st-001.1").json["last_report_age_s"] == 12.3
    stations = client.simulate_get("/api/v1/stations").json["stations"]
    assert {e["last_report_age_s"] for s in stations for e in s["evses"]} == {12.3}


def test_last_report_age_restarts_at_zero_on_a_new_report(
    clock: FakeClock, csms: CsmsSystem, client: falcon.testing.TestClient
) -> None:
    clock.advance(30)
    view = csms.view.evse("st-001.1")
    assert view is not None

    csms.view.put_evse(view.state)
    clock.advance(2)

    assert client.simulate_get("/api/v1/evses/st-001.1").json["last_report_age_s"] == 2.0
    assert client.simulate_get("/api/v1/evses/st-001.2").json["last_report_age_s"] == 32.0


def test_last_report_age_is_never_negative(
    clock: FakeClock, client: falcon.testing.TestClient
) -> None:
    clock.advance(-5)  # the wall clock stepped back (NTP)

    assert client.simulate_get("/api/v1/evses/st-001.1").json["last_report_age_s"] == 0.0
