"""The Falcon gateway (gateway/app.py) through falcon's TestClient: unknown resources are JSON
404s and 405s with a reason, and domain errors become their HTTP statuses.

Command errors come from a tiny fake CSMS behind a test-only route, since no public route sends
commands yet; the rest of the CSMS is a real :class:`CsmsSystem` that is never started
(tests/gateway_support.py).
"""

from __future__ import annotations

import falcon
import falcon.testing
import pytest

from actors.bridge import BridgeStats
from actors.fleet_view import FleetView
from actors.live import LiveHub
from actors.messages import CommandOutcome
from actors.metrics import CsmsMetrics
from gateway.app import create_app
from protocol import CommandArgs, CommandName
from storage.errors import (
    ActorUnavailableError,
    CommandTimeoutError,
    SmartchargeError,
    StorageError,
    StorageUnavailableError,
    UnknownEvseError,
)
from tests import gateway_support

client = gateway_support.client
clock = gateway_support.clock
csms = gateway_support.csms


# -- not found -------------------------------------------------------------------------------


def test_an_unknown_evse_is_a_json_404_with_a_reason(client: falcon.testing.TestClient) -> None:
    result = client.simulate_get("/api/v1/evses/nope-9")

    assert result.status_code == 404
    assert result.headers["content-type"].startswith("application/json")
    assert result.json == {
        "status": 404,
        "title": "404 Not Found",
        "reason": "unknown EVSE 'nope-9'",
    }


def test_an_unknown_station_is_a_json_404_with_a_reason(
    client: falcon.testing.TestClient,
) -> None:
    result = client.simulate_get("/api/v1/stations/nope")

    assert result.status_code == 404
    assert result.headers["content-type"].startswith("application/json")
    assert result.json["status"] == 404
    assert result.json["reason"] == "unknown station 'nope'"


def test_an_unknown_path_is_a_json_404(client: falcon.testing.TestClient) -> None:
    result = client.simulate_get("/api/v2/whatever")

    assert result.status_code == 404
    assert result.headers["content-type"].startswith("application/json")
    assert result.json["status"] == 404
    assert result.json["reason"]


def test_a_write_to_a_read_only_resource_is_a_json_405(
    client: falcon.testing.TestClient,
) -> None:
    result = client.simulate_post("/api/v1/stations")

    assert result.status_code == 405
    assert result.json["status"] == 405
    assert result.json["reason"]


# -- domain errors -> HTTP statuses ----------------------------------------------------------


class FailingCsms:
    """A Csms whose every command raises ``error``; its read model is empty."""

    def __init__(self, error: Exception) -> None:
        self.view = FleetView()
        self.metrics = CsmsMetrics(view=self.view, bridge=BridgeStats(), hub=LiveHub())
        self.error = error

    def command(
        self,
        evse_id: str,
        command: CommandName,
        args: CommandArgs = None,
        timeout_s: float | None = None,
    ) -> CommandOutcome:
        raise self.error


class InfoResource:
    """Test-only route: asks an EVSE for its info, as the driver API will."""

    def __init__(self, csms: FailingCsms) -> None:
        self._csms = csms

    def on_post(self, req: falcon.Request, resp: falcon.Response, evse_id: str) -> None:
        self._csms.command(evse_id, CommandName.INFO)
        resp.media = {"ok": True}


def client_whose_commands_raise(error: Exception) -> falcon.testing.TestClient:
    csms = FailingCsms(error)
    app = create_app(csms)
    app.add_route("/test/evses/{evse_id}/info", InfoResource(csms))
    return falcon.testing.TestClient(app)


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (UnknownEvseError("unknown EVSE 'st-404.1'"), 404),
        (ActorUnavailableError("EVSE st-001.1 is restarting; try again"), 503),
        (CommandTimeoutError("no answer for info on EVSE st-001.1"), 504),
        (SmartchargeError("something the CSMS did not expect"), 500),
    ],
    ids=["unknown-evse-404", "actor-unavailable-503", "command-timeout-504", "other-500"],
)
def test_a_domain_error_becomes_its_http_status_with_the_message_as_reason(
    error: Exception, status: int
) -> None:
    client = client_whose_commands_raise(error)

    result = client.simulate_post("/test/evses/st-001.1/info")

    assert result.status_code == status
    assert result.headers["content-type"].startswith("application/json")
    assert result.json["status"] == status
    assert result.json["reason"] == str(error)
    assert result.json["title"].startswith(str(status))


@pytest.mark.parametrize(
    ("error", "status", "reason"),
    [
        (
            StorageUnavailableError("database is locked: /var/lib/x.db"),
            503,
            "storage is unavailable",
        ),
        (StorageError("UNIQUE constraint failed: sessions.id"), 500, "internal storage error"),
    ],
    ids=["storage-outage-503", "storage-error-500"],
)
def test_a_storage_error_becomes_its_status_without_the_database_details(
    error: Exception, status: int, reason: str
) -> None:
    client = client_whose_commands_raise(error)

    result = client.simulate_post("/test/evses/st-001.1/info")

    assert result.status_code == status
    assert result.json["reason"].startswith(reason)
    assert str(error) not in result.text
