"""A gateway apart from the node: the read replica, requests and their failures, over a real
broker (``docs/node-protocol.md``). The app under test runs on a :class:`NodeClient` that
reaches the CSMS's actors only through Mosquitto."""

from __future__ import annotations

import json
import time
import uuid

import pytest

from actors import node_contract as nc
from actors.charging import Caller
from gateway.node_client import NodeClient
from protocol.mqtt_settings import parse_mqtt_url
from storage.errors import ActorUnavailableError, Conflict
from tests.api_fixtures import EVSE_IDS, Running, next_event, running
from tests.brokers import MqttClientFactory
from tests.driver_client import wait_until

__all__ = ["running"]

pytestmark = [
    pytest.mark.integration,
    pytest.mark.needs_db,
    pytest.mark.remote_gateway,
    pytest.mark.timeout(120),
]

WAIT_S = 20.0


def test_the_replica_matches_the_node_and_a_new_gateway_is_current_at_once(
    running: Running, mosquitto_url: str
) -> None:
    listing = running.call("GET", "/api/v1/stations", https=False).json
    evses = {e["id"]: e for s in listing["stations"] for e in s["evses"]}
    assert sorted(evses) == sorted(EVSE_IDS)
    assert {e["status"] for e in evses.values()} == {"Available"}

    late = NodeClient(parse_mqtt_url(mosquitto_url)).start()  # retained: current on subscribe
    try:
        wait_until(lambda: len(late.view.evses()) == len(EVSE_IDS), "a late gateway's replica")
        assert {v.state.evse_id: v.state for v in late.view.evses()} == {
            v.state.evse_id: v.state for v in running.system.view.evses()
        }
    finally:
        late.stop()


def test_a_driver_reserves_starts_watches_and_stops_through_the_broker(running: Running) -> None:
    token, user_id = running.driver("remote@example.com")
    stream = running.live(user_id)
    evse = EVSE_IDS[0]

    reserved = running.call("POST", f"/api/v1/evses/{evse}/reservation", token)
    assert reserved.status_code == 201, reserved.json
    wait_until(
        lambda: running.node is not None and running.node.view.reservation(evse) is not None,
        "the reservation in the replica",
    )
    started = running.call("POST", f"/api/v1/evses/{evse}/start", token, {"target_soc": 90})
    assert started.status_code == 201, started.json
    session_id = started.json["session_id"]

    event = next_event(stream, "session")  # made by the gateway from the node's EVSE record
    assert event.user_id == user_id
    running.watcher.wait_for(running.watcher.has_been(evse, "Charging"), "Charging")
    wait_until(
        lambda: (
            running.call("GET", f"/api/v1/evses/{evse}", https=False).json["status"] == "Charging"
        ),
        "Charging in the replica",
    )

    stopped = running.call("POST", f"/api/v1/evses/{evse}/stop", token)
    assert stopped.status_code == 200, stopped.json
    running.watcher.wait_for(
        lambda: running.watcher.state(evse).session_id != session_id, "the session over"
    )


def test_the_node_runs_a_request_once_however_often_it_arrives(
    running: Running, mqtt_client: MqttClientFactory, mosquitto_url: str
) -> None:
    _, user_id = running.driver("twice@example.com")
    replies = nc.replies_topic("test-twice")
    client = mqtt_client(mosquitto_url, "test-twice")
    client.subscribe(replies)
    request = nc.Request(
        id=uuid.uuid4().hex,
        reply_to=replies,
        expires_at=int(time.time() * 1000) + 10_000,
        op="reserve",
        caller=Caller(user_id=user_id),
        args={"evse_id": EVSE_IDS[1]},
    )
    for _ in range(2):  # a QoS 1 duplicate while the first still runs: one answer
        client.publish(nc.REQUESTS_TOPIC, request.to_json(), qos=1)
    first = json.loads(client.get_on(replies, WAIT_S).payload)
    assert first["error"] is None
    client.publish(nc.REQUESTS_TOPIC, request.to_json(), qos=1)  # once it is done: the same
    again = json.loads(client.get_on(replies, WAIT_S).payload)
    assert again == first  # the first's answer again, not a second run (that would conflict)
    node = running.system._node
    assert node is not None
    assert node[2].stats.counts["duplicate"] == 2
    assert node[2].stats.counts["ok"] == 1
    assert first["result"]["driver_id"] == user_id


def test_a_late_or_malformed_request_is_never_run(
    running: Running, mqtt_client: MqttClientFactory, mosquitto_url: str
) -> None:
    _, user_id = running.driver("late@example.com")
    client = mqtt_client(mosquitto_url, "test-late")
    late = nc.Request(
        id=uuid.uuid4().hex,
        reply_to=nc.replies_topic("test-late"),
        expires_at=int(time.time() * 1000) - 1,
        op="reserve",
        caller=Caller(user_id=user_id),
        args={"evse_id": EVSE_IDS[2]},
    )
    client.publish(nc.REQUESTS_TOPIC, late.to_json(), qos=1)
    for junk in (
        b"{",
        b'{"op": "__init__"}',
        json.dumps({**json.loads(late.to_json()), "op": "stop_all"}).encode(),
    ):
        client.publish(nc.REQUESTS_TOPIC, junk, qos=1)
    node = running.system._node
    assert node is not None
    counts = node[2].stats.counts
    wait_until(lambda: counts["expired"] == 1 and counts["malformed"] == 3, f"counted: {counts}")
    assert running.system.view.reservation(EVSE_IDS[2]) is None


def test_a_refusal_comes_back_as_the_same_error(running: Running) -> None:
    assert running.node is not None
    _, alice = running.driver("a@example.com")
    _, bob = running.driver("b@example.com")
    running.node.call("reserve", Caller(user_id=alice), {"evse_id": EVSE_IDS[3]})
    with pytest.raises(Conflict, match=r"Reserved|already reserved"):
        running.node.call("reserve", Caller(user_id=bob), {"evse_id": EVSE_IDS[3]})


def test_with_the_node_gone_a_request_fails_at_once_with_503(running: Running) -> None:
    assert running.node is not None
    node = running.system._node
    assert node is not None
    node[0].stop()  # the node's channel says goodbye: alive false
    wait_until(
        lambda: running.node is not None and not running.node.node_online.is_set(), "alive false"
    )
    token, _ = running.driver("gone@example.com")
    began = time.monotonic()
    result = running.call("POST", f"/api/v1/evses/{EVSE_IDS[0]}/start", token)
    assert result.status_code == 503, result.json
    assert time.monotonic() - began < 2.0
    with pytest.raises(ActorUnavailableError):
        running.node.call("info", args={"evse_id": EVSE_IDS[0]})


def test_a_malformed_record_is_counted_and_the_replica_goes_on(
    running: Running, mqtt_client: MqttClientFactory, mosquitto_url: str
) -> None:
    """Only the node may publish these topics (the broker's ACL); a gateway still survives
    garbage on them (a bug, an old node) and applies what comes next."""
    assert running.node is not None
    node = running.node
    client = mqtt_client(mosquitto_url, "test-garbage")
    for junk in (b"{", b"[]", b'{"state": []}', b'{"state": {"evse_id": 3}}'):
        client.publish(nc.evse_topic("xx-001.1"), junk)
    client.publish(nc.station_topic("xx-001"), b"null")
    wait_until(lambda: node.dropped >= 5, "five malformed records dropped")
    token, _ = running.driver("after@example.com")
    reserved = running.call("POST", f"/api/v1/evses/{EVSE_IDS[0]}/reservation", token)
    assert reserved.status_code == 201, reserved.json  # the gateway still works
