"""10,000 malformed payloads over MQTT leave every actor alive and every state unchanged."""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pykka
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from actors.protocol import CommandName, commands_topic, meter_topic, replies_topic, state_topic
from actors.protocol import status_topic as status_t
from actors.system import CsmsConfig, CsmsSystem
from tests.brokers import parse_mqtt_url
from tests.support import FleetProcess, FleetWatcher

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

N_MALFORMED = 10_000
SID, EID = "mf-001", "mf-001.1"  # EID: the CSMS's id; on the wire the station says "1"
EVSES = ["mf-001.1", "mf-001.2", "mf-002.1", "mf-002.2"]


def malformed_payloads(rng: random.Random) -> Iterator[tuple[str, bytes]]:
    """Every kind of bad message a broken or hostile client could send, on real topics."""
    topics = [status_t(SID, "1"), meter_topic(SID, "1"), state_topic(SID), replies_topic(SID)]
    valid_status = {
        "v": 2,
        "epoch": 2**62,
        "evse_id": "1",
        "status": "Available",
        "seq": 10**9,
        "ts": 10**12,
    }
    shapes: list[Callable[[], bytes]] = [
        lambda: rng.randbytes(rng.randint(0, 64)),
        lambda: b"{" + rng.randbytes(8),
        lambda: b"[1, 2, 3]",
        lambda: b"null",
        lambda: json.dumps({**valid_status, "v": 3}).encode(),
        lambda: b"\xef\xbb\xbf" + json.dumps(valid_status).encode(),  # a byte-order mark
        lambda: json.dumps({**valid_status, "status": "Exploded"}).encode(),
        lambda: json.dumps({**valid_status, "status": "Offline"}).encode(),
        lambda: json.dumps({**valid_status, "seq": "one"}).encode(),
        lambda: json.dumps({**valid_status, "soc": 250}).encode(),
        lambda: json.dumps({**valid_status, "energy_wh": -5}).encode(),
        lambda: json.dumps({**valid_status, "power_w": True}).encode(),
        lambda: json.dumps({**valid_status, "evse_id": "2"}).encode(),
        lambda: json.dumps({**valid_status, "epoch": None}).encode(),
        lambda: b'{"v": 2, "evse_id": "1", "status": "Available", "soc": NaN}',
        lambda: b'{"v": 2, "seq": 1' + b"0" * 500 + b"}",
        lambda: b"[" * 5000 + b"]" * 5000,
        lambda: b'{"v":2,"pad":"' + b"x" * 70_000 + b'"}',
    ]
    for n in range(N_MALFORMED):
        shape = shapes[n % len(shapes)]
        yield topics[rng.randrange(len(topics))], shape()


def publish_all(url: str, messages: Iterator[tuple[str, bytes]]) -> int:
    host, port = parse_mqtt_url(url)
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="fuzzer", protocol=mqtt.MQTTv311)
    client.max_inflight_messages_set(200)
    connected = threading.Event()
    client.on_connect = lambda *a: connected.set()
    client.connect(host, port)
    client.loop_start()
    try:
        assert connected.wait(10)
        infos = [client.publish(topic, payload, qos=1) for topic, payload in messages]
        for info in infos:
            info.wait_for_publish(60)
            assert info.is_published()
        return len(infos)
    finally:
        client.disconnect()
        client.loop_stop()


def wait_for_count(read: Callable[[], int], target: int, timeout: float) -> None:
    """Wait (on an Event, with a deadline) until a counter of another thread reaches target."""
    tick, deadline = threading.Event(), time.monotonic() + timeout
    while read() < target:
        assert time.monotonic() < deadline, f"counter stuck at {read()} < {target}"
        tick.wait(0.02)


@pytest.fixture
def running(broker_url: str, tmp_path: Path) -> Iterator[tuple[CsmsSystem, FleetWatcher]]:
    watcher = FleetWatcher()
    system = CsmsSystem(CsmsConfig(mqtt_url=broker_url, listeners=(watcher,))).start()
    fleet = FleetProcess(
        broker_url, tmp_path / "fleet", stations=2, evses=2, speed=1, prefix="mf"
    ).start()
    try:
        watcher.wait_for(
            lambda: all(watcher.status_is(e, "Available")() for e in EVSES), "4 EVSEs Available", 30
        )
        yield system, watcher
    finally:
        fleet.terminate()
        system.stop()
        pykka.ActorRegistry.stop_all()


def test_ten_thousand_malformed_payloads_change_nothing_and_kill_nothing(
    running: tuple[CsmsSystem, FleetWatcher], broker_url: str
) -> None:
    system, _watcher = running
    system.evse_ref(EID)  # barrier: the supervisor has applied every event seen so far
    before = {e: system.view.evse(e).state for e in EVSES}  # type: ignore[union-attr]
    refs = {e: system.evse_ref(e) for e in EVSES}
    malformed_before = system.bridge_stats.malformed

    rng = random.Random(2024)
    sent = publish_all(broker_url, malformed_payloads(rng))
    # Garbage for the stations too: their command topics.
    publish_all(
        broker_url,
        ((commands_topic(s), rng.randbytes(20)) for s in ("mf-001", "mf-002") for _ in range(500)),
    )
    assert sent == N_MALFORMED

    wait_for_count(lambda: system.bridge_stats.malformed - malformed_before, N_MALFORMED, 60)
    # Every actor is the same live actor, and every station still answers.
    for evse_id in EVSES:
        outcome = system.command(evse_id, CommandName.INFO)
        assert outcome.accepted
        assert system.evse_ref(evse_id) is refs[evse_id]
        assert refs[evse_id].is_alive()
    assert {e: system.view.evse(e).state for e in EVSES} == before  # type: ignore[union-attr]
    assert system.bridge_stats.malformed - malformed_before == N_MALFORMED
    assert system.supervisor is not None
    assert system.supervisor.is_alive()
