"""Smart charging over MQTT, end to end (issue 14's acceptance): a real Mosquitto, a real
``smartcharge csms`` and a simulated fleet of 5 stations x 2 EVSEs of 22 kW.

A site limited to 50 kW with its 10 EVSEs all charging: the measured power (what the
stations' meter values say, read from the public API) comes down to at most 50 kW and every
EVSE charges at or above its minimum; the limit lowered to 20 kW through the API suspends
EVSEs (``SuspendedEVSE``) and the measured power follows; raised, they resume. The waits
are bounded (a few meter intervals at the fleet's speed); how fast it is belongs to
``python -m bench smartcharging``.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gateway.broker import free_port
from tests.driver_client import Api, csms_process, wait_until
from tests.support import FleetProcess

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

STATIONS = [f"sc-{n}" for n in range(1, 6)]
EVSES = [f"{s}.{e}" for s in STATIONS for e in (1, 2)]
MIN_KW = 4.14  # 6 A on three phases: what the site gives an EVSE that charges at all
TOLERANCE_KW = 0.5
"""Meter values are rounded averages over an interval: what the sum may show above a limit."""
SPEED = 6.0  # a 5 s meter interval every ~0.8 s


@dataclass
class Stack:
    api: Api
    operator: str


def fleet_config(path: Path) -> Path:
    path.write_text(
        json.dumps(
            {
                "stations": [
                    {
                        "id": station,
                        "name": f"Depot bay {n}",
                        "lat": 44.49 + n / 1000,
                        "lon": 11.34,
                        "evses": [
                            {"id": "1", "max_power_w": 22_000, "connector": "Type2"},
                            {"id": "2", "max_power_w": 22_000, "connector": "Type2"},
                        ],
                    }
                    for n, station in enumerate(STATIONS, 1)
                ]
            }
        )
    )
    return path


@pytest.fixture
def stack(mosquitto_url: str, tmp_path: Path) -> Iterator[Stack]:
    http_port, https_port = free_port(), free_port()
    data_dir = tmp_path / "csms"
    with (
        csms_process(
            mosquitto_url,
            data_dir,
            http_port,
            https_port,
            tmp_path / "csms.log",
            extra=("--demo-users",),
        ),
        FleetProcess(
            mosquitto_url,
            tmp_path / "fleet",
            stations=len(STATIONS),
            speed=SPEED,
            config=fleet_config(tmp_path / "fleet.json"),
        ),
    ):
        cert = data_dir / "tls" / "cert.pem"
        wait_until(cert.exists, "the self-signed certificate")
        api = Api(http_port, https_port, cert)
        wait_until(lambda: len(evses(api)) == len(EVSES), "10 EVSEs", timeout=60)
        logins_path = data_dir / "demo-logins.json"
        logins = wait_until(
            lambda: json.loads(logins_path.read_text()) if logins_path.exists() else None,
            "demo-logins.json",
        )
        who = logins["operator"]
        status, body = api.post(
            "/api/v1/auth/login", {"email": who["email"], "password": who["password"]}
        )
        assert status == 200, body
        yield Stack(api=api, operator=body["access_token"])


def evses(api: Api) -> dict[str, dict[str, Any]]:
    status, body = api.get("/api/v1/stations", secure=False)
    if status != 200:
        return {}
    return {e["id"]: e for s in body["stations"] for e in s["evses"] if e["id"] in EVSES}


def measured_kw(found: dict[str, dict[str, Any]]) -> float:
    return sum(e["power_w"] for e in found.values()) / 1000


def set_limit(stack: Stack, kw: float) -> None:
    status, body = stack.api.call(
        "PUT", "/api/v1/sites/depot/limit", {"limit_kw": kw}, token=stack.operator
    )
    assert status == 200, body
    assert body["limit_kw"] == kw


def test_a_site_limit_is_shared_lowered_and_raised_over_mqtt(stack: Stack) -> None:
    api = stack.api
    status, body = api.call(
        "PUT",
        "/api/v1/sites/depot",
        {
            "name": "Depot",
            "limit_kw": 50,
            "station_ids": STATIONS,
            "evse_limits": {e: {"min_kw": MIN_KW, "max_kw": 22} for e in EVSES},
        },
        token=stack.operator,
    )
    assert status == 201, body
    for evse_id in EVSES:
        status, body = api.post(
            f"/api/v1/evses/{evse_id}/start", {"target_soc": 100}, token=stack.operator
        )
        assert status == 201, (evse_id, body)

    def shared(limit_kw: float, charging: int) -> dict[str, dict[str, Any]] | None:
        found = evses(api)
        running = [e for e in found.values() if e["status"] == "Charging"]
        suspended = [e for e in found.values() if e["status"] == "SuspendedEVSE"]
        if len(running) != charging or len(suspended) != len(EVSES) - charging:
            return None
        if measured_kw(found) > limit_kw + TOLERANCE_KW:
            return None
        if any(e["power_w"] < MIN_KW * 1000 - 50 for e in running):
            return None  # a meter value from before the limit came down
        return found

    # 50 kW for ten: every EVSE charges, none below its minimum, the sum within the limit
    found = wait_until(lambda: shared(50, charging=10), "10 EVSEs sharing 50 kW", timeout=40)
    assert measured_kw(found) <= 50 + TOLERANCE_KW
    site = api.call("GET", "/api/v1/sites/depot", token=stack.operator)[1]
    live = wait_until(
        lambda: api.call("GET", "/api/v1/sites/depot", token=stack.operator)[1]["live"],
        "the node's decision recorded",
    )
    assert live["allocated_kw"] <= 50
    assert site["station_ids"] == STATIONS

    # 20 kW: four minimums fit (4 x 4.14 kW), the other six are suspended in turn
    set_limit(stack, 20)
    found = wait_until(lambda: shared(20, charging=4), "4 charging under 20 kW", timeout=40)
    assert measured_kw(found) <= 20 + TOLERANCE_KW

    # raised again: everyone resumes
    set_limit(stack, 60)
    found = wait_until(lambda: shared(60, charging=10), "10 charging under 60 kW", timeout=40)
    assert measured_kw(found) <= 60 + TOLERANCE_KW
    # the node's /metrics says the same
    with urllib.request.urlopen(f"http://127.0.0.1:{api.http_port}/metrics", timeout=10) as r:
        text = r.read().decode()
    assert 'smartcharge_site_limit_watts{site="depot"} 60000.0' in text
