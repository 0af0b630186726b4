"""Metrics: Prometheus ``/metrics`` on a running fleet, per system, and a system scrape without
a fleet."""

from __future__ import annotations

import falcon.testing
import pytest
from prometheus_client.parser import text_string_to_metric_families

from actors.bridge import BridgeStats
from actors.fleet_view import FleetView
from actors.live import LiveHub
from actors.metrics import CsmsMetrics
from actors.system import CsmsConfig, CsmsSystem
from gateway.app import create_app
from protocol import CommandName, EvseStatus
from tests import api_fixtures
from tests.api_fixtures import EVSE_IDS, Running

pytest_plugins = ("tests.storage_fixtures",)
running = api_fixtures.running


def scrape(
    client: falcon.testing.TestClient,
) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """``/metrics`` over plain HTTP without a token, as ``{(sample name, labels): value}``."""
    result = client.simulate_get("/metrics", protocol="http")
    assert result.status_code == 200
    assert result.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(result.text)
        for sample in family.samples
    }


# -- /metrics on a running fleet ---------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.timeout(120)
def test_metrics_move_when_a_driver_starts_charging(running: Running) -> None:
    evse = EVSE_IDS[0]
    # Each EVSE actor tells the supervisor before the watcher, so once an ask to the
    # supervisor returns, the FleetView shows what the watcher saw.
    running.system.evse_ref(evse)
    before = scrape(running.client)
    assert before[("smartcharge_evses", (("status", "Available"),))] == len(EVSE_IDS)
    assert before[("smartcharge_evses", (("status", "Charging"),))] == 0

    token, _ = running.driver("alice@example.com")
    started = running.call("POST", f"/api/v1/evses/{evse}/start", token)
    assert started.status_code == 201, started.json
    running.watcher.wait_for(running.watcher.status_is(evse, "Charging"), "Charging")
    running.system.evse_ref(evse)

    after = scrape(running.client)
    start = (("command", "start"),)
    assert (
        after[("smartcharge_mqtt_messages_received_total", ())]
        > before[("smartcharge_mqtt_messages_received_total", ())]
    )
    assert after[("smartcharge_mqtt_messages_sent_total", ())] >= 1
    assert after[("smartcharge_command_round_trip_seconds_count", start)] == 1
    assert after[("smartcharge_command_round_trip_seconds_sum", start)] > 0
    assert after[("smartcharge_evses", (("status", "Charging"),))] == 1
    assert after[("smartcharge_sessions_active", ())] == 1
    assert after[("smartcharge_actor_restarts_total", ())] == 0
    assert after[("smartcharge_mqtt_messages_malformed_total", ())] == 0


def test_metrics_count_timeouts_and_open_streams_per_system() -> None:
    first, second = CsmsSystem(CsmsConfig()), CsmsSystem(CsmsConfig())
    first.metrics.observe_command(CommandName.STOP, None)
    first.metrics.observe_command(CommandName.INFO, 0.2)
    first.hub.subscribe(lambda event: True)

    ours = scrape(falcon.testing.TestClient(create_app(first)))
    theirs = scrape(falcon.testing.TestClient(create_app(second)))

    assert ours[("smartcharge_command_timeouts_total", (("command", "stop"),))] == 1
    assert ours[("smartcharge_command_round_trip_seconds_count", (("command", "info"),))] == 1
    assert ours[("smartcharge_sse_streams", ())] == 1
    assert ("smartcharge_command_timeouts_total", (("command", "stop"),)) not in theirs
    assert theirs[("smartcharge_sse_streams", ())] == 0


def test_a_system_scrape_without_a_fleet_lists_every_status_at_zero() -> None:
    metrics = CsmsMetrics(view=FleetView(), bridge=BridgeStats(), hub=LiveHub())
    families = {f.name: f for f in text_string_to_metric_families(metrics.exposition().decode())}
    statuses = {s.labels["status"]: s.value for s in families["smartcharge_evses"].samples}
    assert statuses == {str(status): 0 for status in EvseStatus}
