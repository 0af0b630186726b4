"""The OpenAPI document: valid, complete, and true to the running gateway.

The fuzzing half runs schemathesis against the real Falcon app in-process (WSGI), backed by a
started CSMS on a real Mosquitto, SQLite storage, and one fake station that announces itself
over MQTT but never answers a command: every command comes back as a real 504 within
``command_timeout_s``. Its ids are the document's examples (``st-001``, ``st-001.1``), so the
examples phase reaches a live EVSE and not only 404s.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import argon2
import falcon
import falcon.testing
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from actors.system import CsmsConfig, CsmsSystem
from gateway.app import create_app
from gateway.auth import LocalAuthenticator
from gateway.openapi import OPENAPI, build_openapi
from protocol import (
    EvseDescriptor,
    EvseId,
    EvseInfo,
    EvseStatus,
    StationBirth,
    StationDescriptor,
    StationId,
    StatusReport,
    encode,
    evse_key,
)
from storage import DuplicateError, Storage
from tests.brokers import MqttTestClient
from tests.db import database_for_test, open_test_storage
from tests.support import FleetWatcher

pytestmark = [pytest.mark.integration, pytest.mark.needs_db, pytest.mark.timeout(240)]

STATION = StationDescriptor(
    id=StationId("st-001"),
    name="Fuzzing depot",
    lat=44.4949,
    lon=11.3426,
    evses=(EvseDescriptor(id=EvseId("1")), EvseDescriptor(id=EvseId("2"))),
)
# The CSMS names an EVSE station.evse (the document's example is st-001.1).
EVSE_KEYS = tuple(evse_key(STATION.id, evse.id) for evse in STATION.evses)
PASSWORD = "correct horse battery"
SSE_PATHS = ("/api/v1/me/events", "/api/v1/events")
# 503 and 504 are documented answers (the CSMS is down, the station is silent), not crashes:
# status_code_conformance still fails them wherever the document does not list them.
DOCUMENTED_5XX = ["2xx", "3xx", "4xx", "503", "504"]
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]


def documented_routes() -> set[tuple[str, str]]:
    return {
        (method.upper(), path)
        for path, item in OPENAPI["paths"].items()
        for method in item
        if method in ("get", "put", "post", "delete", "patch", "head", "options")
    }


def registered_routes(app: falcon.App) -> set[tuple[str, str]]:
    """Every (method, URI template) with a responder of ours (not Falcon's 405/OPTIONS)."""
    found: set[tuple[str, str]] = set()
    nodes = list(app._router._roots)
    while nodes:
        node = nodes.pop()
        nodes.extend(node.children)
        for method, responder in (node.method_map or {}).items():
            if node.uri_template is None or responder.__module__.startswith("falcon."):
                continue
            found.add((method, node.uri_template))
    return found


# -- the document on its own -----------------------------------------------------------------


def test_the_document_is_valid_openapi_3() -> None:
    schema = schemathesis.openapi.from_dict(json.loads(json.dumps(OPENAPI)))
    schema.validate()
    assert OPENAPI["openapi"] == "3.0.3"


def test_the_validator_would_notice_a_broken_document() -> None:
    broken = json.loads(json.dumps(OPENAPI))
    broken["paths"]["/healthz"]["get"]["responses"]["200"] = {"content": {}}
    with pytest.raises(Exception, match="not valid"):
        schemathesis.openapi.from_dict(broken).validate()


def test_every_reference_in_the_document_resolves() -> None:
    text = json.dumps(OPENAPI)
    for ref in set(re.findall(r'"\$ref": "#/([^"]+)"', text)):
        node: Any = OPENAPI
        for part in ref.split("/"):
            assert part in node, f"dangling $ref #/{ref}"
            node = node[part]


def test_every_write_and_every_call_with_a_token_is_documented_on_https_only() -> None:
    for path, item in OPENAPI["paths"].items():
        for method, operation in item.items():
            needs_https = method != "get" or operation["security"] != []
            servers = operation.get("servers", OPENAPI["servers"])
            schemes = {server["url"].split(":")[0] for server in servers}
            assert schemes == ({"https"} if needs_https else {"http", "https"}), (method, path)


def test_every_operation_documents_the_json_error_body_for_its_errors() -> None:
    responses = OPENAPI["components"]["responses"]
    for path, item in OPENAPI["paths"].items():
        for method, operation in item.items():
            for code, response in operation["responses"].items():
                if int(code) < 400:
                    continue
                if "$ref" in response:
                    response = responses[response["$ref"].rsplit("/", 1)[1]]
                schema = response["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/Error"}, (method, path, code)


# -- the document against the app ------------------------------------------------------------


@dataclass(frozen=True)
class Gateway:
    app: falcon.App
    tokens: dict[str, str]
    """Access tokens by role: "driver", "operator"."""

    def headers(self, role: str) -> dict[str, str]:
        token = self.tokens.get(role)
        return {} if token is None else {"Authorization": f"Bearer {token}"}


def announce_fake_station(url: str) -> MqttTestClient:
    """Birth and Available status reports, retained; the station then never answers."""
    station = MqttTestClient(url, "fake-station-st-001").connect()
    messages: list[StationBirth | StatusReport] = [StationBirth(station=STATION, ts=1, epoch=1)]
    messages += [
        StatusReport(
            station_id=STATION.id,
            info=EvseInfo(evse_id=evse.id, status=EvseStatus.AVAILABLE, soc=None),
            seq=1,
            ts=1,
            epoch=1,
        )
        for evse in STATION.evses
    ]
    for message in messages:
        topic, payload, retain = encode(message)
        station.publish(topic, payload, retain=retain)
    return station


@pytest.fixture(scope="module")
def gateway(
    module_mosquitto_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    data_dir: Path = tmp_path_factory.mktemp("gateway")
    database = contextlib.ExitStack()  # SQLite in data_dir, or a fresh PostgreSQL database
    storage: Storage = open_test_storage(
        data_dir, database.enter_context(database_for_test(data_dir))
    )
    watcher = FleetWatcher()
    system = CsmsSystem(
        CsmsConfig(
            mqtt_url=module_mosquitto_url,
            client_id="smartcharge-csms-openapi",
            command_timeout_s=0.5,
            storage=storage,
            listeners=(watcher,),
        )
    )
    auth = LocalAuthenticator(
        storage.users,
        storage.refresh_tokens,
        secret=b"s" * 32,
        duplicate_error=DuplicateError,
        hasher=argon2.PasswordHasher(time_cost=1, memory_cost=8, parallelism=1),
    )
    system.start(wait_connected_s=10.0)
    station = announce_fake_station(module_mosquitto_url)
    try:
        watcher.wait_for(
            lambda: all(watcher.status_is(key, EvseStatus.AVAILABLE)() for key in EVSE_KEYS),
            "the fake station's EVSEs to be Available",
        )
        auth.create_user("operator@example.com", PASSWORD, "operator")
        tokens = {
            "driver": auth.register("driver@example.com", PASSWORD).access_token,
            "operator": auth.login("operator@example.com", PASSWORD).access_token,
        }
        # Sign-ups unlimited here, so the fuzzer reaches more than the first 10 of them.
        app = create_app(
            system, auth=auth, storage=storage, https_base=None, signup_limits=(100_000, 60.0)
        )
        yield Gateway(app=app, tokens=tokens)
    finally:
        station.close()
        system.stop()
        storage.close()
        database.close()


def test_every_route_of_the_app_is_documented_and_nothing_else(gateway: Gateway) -> None:
    assert registered_routes(gateway.app) == documented_routes()


def test_the_app_serves_the_document_at_openapi_json(gateway: Gateway) -> None:
    result = falcon.testing.TestClient(gateway.app).simulate_get("/openapi.json")
    assert result.status_code == 200
    # This app has no HTTPS URL: the request's own origin serves every call.
    own = build_openapi(http_url="http://falconframework.org", https_url=None)
    assert result.json == json.loads(json.dumps(own))
    assert result.json["components"] == json.loads(json.dumps(OPENAPI["components"]))


@pytest.mark.parametrize("path", SSE_PATHS)
def test_an_event_stream_without_a_token_is_a_documented_401(gateway: Gateway, path: str) -> None:
    result = falcon.testing.TestClient(gateway.app).simulate_get(path)
    assert result.status_code == 401
    assert result.headers["WWW-Authenticate"] == "Bearer"
    assert set(result.json) == {"status", "title", "reason"}
    assert "401" in OPENAPI["paths"][path]["get"]["responses"]


def test_the_operator_stream_refuses_a_driver_with_a_documented_403(gateway: Gateway) -> None:
    result = falcon.testing.TestClient(gateway.app).simulate_get(
        "/api/v1/events", headers=gateway.headers("driver")
    )
    assert result.status_code == 403
    assert result.json["reason"] == "this stream is for operators"
    assert "403" in OPENAPI["paths"]["/api/v1/events"]["get"]["responses"]


@pytest.mark.parametrize("query", ["lat=nan&lon=11.34", "lat=44.49&lon=NaN"])
def test_a_nan_coordinate_is_refused_like_any_out_of_range_one(
    gateway: Gateway, query: str
) -> None:
    # NaN slipped through Falcon's min_value/max_value (every comparison with NaN is False).
    result = falcon.testing.TestClient(gateway.app).simulate_get(
        "/api/v1/evses/nearest", query_string=query
    )
    assert result.status_code == 400
    assert result.json["title"] == "Invalid parameter"


def test_a_token_over_plain_http_is_the_documented_https_required_403() -> None:
    app = create_app(CsmsSystem(CsmsConfig()), https_base="https://127.0.0.1:8443")
    result = falcon.testing.TestClient(app).simulate_get(
        "/api/v1/stations", headers={"Authorization": "Bearer x"}
    )
    assert result.status_code == 403
    assert result.json["title"] == "HTTPS required"
    assert "https://127.0.0.1:8443/api/v1/stations" in result.json["reason"]
    assert "403" in OPENAPI["paths"]["/api/v1/stations"]["get"]["responses"]


class LateApp:
    """A WSGI app whose target is plugged in by a fixture.

    schemathesis builds its tests at import time, from the document that ``/openapi.json``
    serves; the real app exists only once the broker fixture runs. (``from_fixture``, the
    lazy way, does not work with pytest 9: it sets ``node._nodeid``, which pytest dropped.)
    """

    def __init__(self) -> None:
        self.target: falcon.App = create_app(CsmsSystem(CsmsConfig()))

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        return self.target(environ, start_response)


LATE_APP = LateApp()
schema = schemathesis.openapi.from_wsgi(
    "/openapi.json",
    LATE_APP,
    config=SchemathesisConfig.from_dict(
        {
            "checks": {"not_a_server_error": {"expected-statuses": DOCUMENTED_5XX}},
            "generation": {"mode": "all", "max-examples": 25},
        }
    ),
).exclude(
    # Event streams never end (a 5-minute stream per example): tested by hand above.
    path_regex=r"^/api/v1/(me/)?events$"
)


@pytest.fixture
def live_app(gateway: Gateway) -> Gateway:
    LATE_APP.target = gateway.app
    return gateway


@schema.parametrize()
@pytest.mark.parametrize("role", ["anonymous", "driver", "operator"])
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_the_api_keeps_to_its_document_whatever_it_is_sent(
    case: schemathesis.Case, role: str, live_app: Gateway
) -> None:
    case.call_and_validate(headers=live_app.headers(role), checks=CHECKS)
