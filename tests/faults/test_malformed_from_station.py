"""10,000 malformed payloads from an authenticated station leave every actor alive and every
state unchanged, on both brokers enforcing identity and the ACL.

The fuzzer is station ``mz-001`` with its own credentials (its birth and statuses are valid,
then it turns hostile on its own topics: the only ones the ACL lets it use); the fleet's
stations ``mf-001`` and ``mf-002`` keep running and answering commands beside it.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
import pykka
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from actors.bridge import MqttBridgeActor
from actors.messages import Publish
from actors.system import CsmsSystem
from protocol import (
    CommandName,
    EvseDescriptor,
    EvseId,
    EvseInfo,
    EvseStatus,
    StationBirth,
    StationDescriptor,
    StationId,
    StatusReport,
    commands_topic,
    encode,
    meter_topic,
    replies_topic,
    state_topic,
)
from protocol import status_topic as status_t
from protocol.mqtt_settings import parse_mqtt_url
from tests.conftest import SecureBroker
from tests.faults.secure_fleet import secure_csms_and_fleet
from tests.support import FleetWatcher

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

N_MALFORMED = 10_000
SID, EID = "mz-001", "mz-001.1"  # EID: the CSMS's id; on the wire the station says "1"
FLEET_EVSES = ["mf-001.1", "mf-001.2", "mf-002.1", "mf-002.2"]
EVSES = [*FLEET_EVSES, "mz-001.1", "mz-001.2"]


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


def publish_all(
    broker: SecureBroker, user: str, password: str, messages: Iterator[tuple[str, bytes]]
) -> int:
    settings = parse_mqtt_url(broker.url, env={})
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=user, protocol=mqtt.MQTTv311)
    client.username_pw_set(user, password)
    client.max_inflight_messages_set(200)
    connected = threading.Event()

    def on_connect(_c: object, _u: object, _f: object, rc: ReasonCode, _p: object) -> None:
        if not rc.is_failure:
            connected.set()

    client.on_connect = on_connect
    client.connect(settings.host, settings.port)
    client.loop_start()
    try:
        assert connected.wait(10), f"{user} could not log in"
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


def scripted_birth() -> list[tuple[str, bytes]]:
    """``mz-001``'s valid birth and first statuses (before it turns hostile)."""
    now = int(time.time() * 1000)
    evses = tuple(
        EvseDescriptor(id=EvseId(e), connector="Type2", max_power_w=22_000.0) for e in ("1", "2")
    )
    descriptor = StationDescriptor(id=StationId(SID), name="mz", lat=45.0, lon=9.0, evses=evses)
    messages = [encode(StationBirth(station=descriptor, ts=now, epoch=1))]
    for n, e in enumerate(("1", "2")):
        info = EvseInfo(evse_id=EvseId(e), status=EvseStatus.AVAILABLE)
        report = StatusReport(station_id=StationId(SID), info=info, seq=n + 1, ts=now, epoch=1)
        messages.append(encode(report))
    return [(topic, payload) for topic, payload, _retain in messages]


@dataclass
class Running:
    broker: SecureBroker
    system: CsmsSystem
    fuzzer_password: str


@pytest.fixture
def running(secure_broker: SecureBroker, tmp_path: Path) -> Iterator[Running]:
    fuzzer_password = secure_broker.station(SID)
    watcher = FleetWatcher()
    with secure_csms_and_fleet(secure_broker, tmp_path, "mf", watcher) as system:
        publish_all(secure_broker, SID, fuzzer_password, iter(scripted_birth()))
        watcher.wait_for(
            lambda: all(watcher.status_is(e, "Available")() for e in EVSES),
            "6 EVSEs Available",
            30,
        )
        yield Running(secure_broker, system, fuzzer_password)


def test_ten_thousand_malformed_payloads_change_nothing_and_kill_nothing(
    running: Running,
) -> None:
    system = running.system
    system.evse_ref(EID)  # barrier: the supervisor has applied every event seen so far
    before = {e: system.view.evse(e).state for e in EVSES}  # type: ignore[union-attr]
    refs = {e: system.evse_ref(e) for e in EVSES}
    malformed_before = system.bridge_stats.malformed

    rng = random.Random(2024)
    sent = publish_all(running.broker, SID, running.fuzzer_password, malformed_payloads(rng))
    assert sent == N_MALFORMED
    # Garbage for the stations too, on their command topics, from the CSMS's own connection
    # (only its user may publish there: a bug of ours; a second connection would take over
    # its client id).
    bridge = pykka.ActorRegistry.get_by_class(MqttBridgeActor)[0]
    for sid in ("mf-001", "mf-002"):
        for _ in range(500):
            bridge.tell(Publish(topic=commands_topic(sid), payload=rng.randbytes(20)))

    wait_for_count(lambda: system.bridge_stats.malformed - malformed_before, N_MALFORMED, 60)
    # Every actor is the same live actor, and every fleet station still answers (after the
    # garbage: one connection, in order).
    for evse_id in EVSES:
        assert system.evse_ref(evse_id) is refs[evse_id]
        assert refs[evse_id].is_alive()
    for evse_id in FLEET_EVSES:
        outcome = system.command(evse_id, CommandName.INFO)
        assert outcome.accepted
    assert {e: system.view.evse(e).state for e in EVSES} == before  # type: ignore[union-attr]
    assert system.bridge_stats.malformed - malformed_before == N_MALFORMED
    assert system.supervisor is not None
    assert system.supervisor.is_alive()
