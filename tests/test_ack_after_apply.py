"""Acknowledge after apply (issue 10, point 7) against a real Mosquitto.

- the link alone: a batch the parent has not applied is not acknowledged; when the MQTT
  child dies, the broker delivers it again to the next child; the late release of the old
  batch acknowledges nothing (its connection is gone); once applied, a batch is
  acknowledged and never delivered again, even across another child crash;
- the whole CSMS (MQTT client in a child process and in-process): every applied message is
  acknowledged exactly once (nothing comes back after a reconnect);
- a session start waits for the session recorder's database write: the MQTT connection
  dies while the write is held, the broker redelivers the report, the CSMS ignores the
  duplicate (stale ``seq``) and the session row is written once.

Every wait is on a condition or a polling helper with a deadline; nothing sleeps.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pykka
import pytest

from actors.acks import AppliedLatch
from actors.bridge import MqttBridgeActor
from actors.messages import Publish
from actors.mqtt_link import MqttLink
from actors.mqtt_transport import InProcessLink
from actors.system import CsmsConfig, CsmsSystem
from protocol import (
    EvseDescriptor,
    EvseId,
    EvseInfo,
    EvseStatus,
    SessionId,
    StationBirth,
    StationDescriptor,
    StationId,
    StatusReport,
    encode,
    meter_topic,
)
from tests import db
from tests.brokers import MqttClientFactory, MqttTestClient, parse_mqtt_url
from tests.db import open_test_storage
from tests.mqtt_link_support import WAIT_S, now_ms, publish_burst, wait_until
from tests.support import FleetWatcher

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

SID, EID = StationId("ack-001"), EvseId("1")  # the station's own id
KEY = f"{SID}.{EID}"  # the CSMS's
TOPIC = meter_topic(SID, EID)
db_url = db.db_url  # the fixture: SQLite, or a fresh PostgreSQL database (SMARTCHARGE_DB_URL)


# ============================================================================ the link alone


@dataclass
class HeldBatches:
    """The link's callbacks, holding every batch's latch until the test releases it."""

    cond: threading.Condition = field(default_factory=threading.Condition)
    batches: list[tuple[list[bytes], AppliedLatch]] = field(default_factory=list)
    ups: int = 0

    def on_messages(self, batch: list[tuple[str | None, bytes]], latch: AppliedLatch) -> None:
        with self.cond:
            self.batches.append(([bytes(p) for t, p in batch if t == TOPIC], latch))
            self.cond.notify_all()

    def on_state(self, up: bool, detail: str, failure: bool) -> None:
        with self.cond:
            self.ups += up
            self.cond.notify_all()

    def payloads(self, start: int = 0) -> list[bytes]:
        with self.cond:
            return [p for payloads, _ in self.batches[start:] for p in payloads]

    def wait_for(self, predicate: Callable[[], bool], what: str) -> None:
        with self.cond:
            if not self.cond.wait_for(predicate, WAIT_S):
                raise AssertionError(f"timed out after {WAIT_S} s waiting for {what}")

    def release(self, start: int, end: int) -> None:
        with self.cond:
            latches = [latch for _, latch in self.batches[start:end]]
        for latch in latches:
            latch.release()


@pytest.fixture
def held_link(mosquitto_url: str) -> Iterator[tuple[MqttLink, HeldBatches]]:
    host, port = parse_mqtt_url(mosquitto_url)
    held = HeldBatches()
    link = MqttLink(
        host,
        port,
        client_id=f"ack-{uuid.uuid4().hex[:10]}",
        keepalive=10,
        on_messages=held.on_messages,
        on_state=held.on_state,
        on_publish_failed=lambda topic, error: None,
    )
    link.start()
    try:
        yield link, held
    finally:
        link.stop()


def subscribed(held: HeldBatches, publisher: MqttTestClient, tag: str) -> None:
    """Probe until one gets through (the link reports ``up`` before its SUBACK)."""
    n = 0

    def through() -> bool:
        nonlocal n
        n += 1
        publisher.client.publish(TOPIC, f"{tag}-{n}".encode(), qos=1)
        with held.cond:
            held.cond.wait(0.2)
        return any(p.startswith(tag.encode()) for p in held.payloads())

    wait_until(through, f"the link to receive a {tag}")


def kill_child(link: MqttLink, held: HeldBatches) -> None:
    pid, ups = link.pid, held.ups
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    held.wait_for(lambda: held.ups > ups, "a new MQTT child to connect")
    assert link.pid != pid


def test_a_batch_is_acknowledged_only_once_applied_and_redelivered_if_the_child_dies_first(
    mosquitto_url: str,
    mqtt_client: MqttClientFactory,
    held_link: tuple[MqttLink, HeldBatches],
) -> None:
    link, held = held_link
    held.wait_for(lambda: held.ups == 1, "the link to come up")
    publisher = mqtt_client(mosquitto_url)
    subscribed(held, publisher, "probe")
    held.release(0, len(held.batches))  # the probes: applied

    # Received by the parent, not applied: nothing is acknowledged.
    wait_until(lambda: link.acked >= 1, "the probes to be acknowledged")
    acked_probes = link.acked
    first = len(held.batches)
    payloads = [b"m-%d" % i for i in range(30)]
    publish_burst(publisher, TOPIC, payloads)
    held.wait_for(lambda: held.payloads(first) == payloads, "the 30 messages, once")
    assert link.acked == acked_probes

    # The child dies before the apply: the broker delivers them again to the next one.
    second = len(held.batches)  # (a redelivery may come before the new child's "up")
    kill_child(link, held)
    held.wait_for(
        lambda: set(payloads) <= set(held.payloads(second)), "the 30 messages, redelivered"
    )

    # The first delivery is applied late: its connection is gone, so nothing is acked...
    held.release(first, second)
    # ...and the redelivery, applied, is acknowledged: exactly the 30 (and probes) it held.
    third = len(held.batches)
    held.release(second, third)
    wait_until(lambda: link.acked >= acked_probes + 30, "the redelivered batch's acks")
    assert link.acked == acked_probes + 30, "the late release of the first delivery acked"

    # Acknowledged means gone: another child crash brings none of them back. (The child
    # writes the PUBACKs before a publish the parent sends after them: that one's arrival
    # proves the broker has them.)
    fence = mqtt_client(mosquitto_url)
    fence.subscribe("ack/fence")
    assert link.publish("ack/fence", b"after the acks", False)
    assert fence.get_on("ack/fence", timeout=WAIT_S).payload == b"after the acks"
    fourth = len(held.batches)
    kill_child(link, held)
    subscribed(held, publisher, "after")
    assert not set(payloads) & set(held.payloads(fourth)), "an acknowledged message came back"
    assert link.acked == acked_probes + 30


# ============================================================================ the whole CSMS


def birth() -> tuple[str, bytes]:
    station = StationDescriptor(
        id=SID, name="Ack test", lat=45.0, lon=9.0, evses=(EvseDescriptor(id=EID),)
    )
    topic, payload, _ = encode(StationBirth(station=station, ts=now_ms()))
    return topic, payload


def status(seq: int, status: EvseStatus, session: str | None = None) -> tuple[str, bytes]:
    info = EvseInfo(
        evse_id=EID,
        status=status,
        session_id=SessionId(session) if session else None,
        energy_wh=1000.0 + seq,
    )
    topic, payload, _ = encode(StatusReport(station_id=SID, info=info, seq=seq, ts=now_ms()))
    return topic, payload


def publish(station: MqttTestClient, message: tuple[str, bytes]) -> None:
    """Not retained: the only way a message comes back is a redelivery."""
    station.publish(message[0], message[1], retain=False)


def bridge_of(system: CsmsSystem) -> MqttBridgeActor:
    refs = pykka.ActorRegistry.get_by_class(MqttBridgeActor)
    assert len(refs) == 1
    bridge = refs[0]._actor_weakref()
    assert isinstance(bridge, MqttBridgeActor)
    return bridge


def fence(system: CsmsSystem, subscriber: MqttTestClient) -> None:
    """Returns once every acknowledgement counted so far is written to the broker: a
    publish the CSMS queues after them goes out after them (one queue, in order)."""
    refs = pykka.ActorRegistry.get_by_class(MqttBridgeActor)
    payload = uuid.uuid4().hex.encode()
    refs[0].tell(Publish(topic="ack/fence", payload=payload))
    assert subscriber.get_on("ack/fence", timeout=WAIT_S).payload == payload


def drop_connection(system: CsmsSystem) -> None:
    """The CSMS's MQTT connection dies: its child killed, or (in-process) its socket cut."""
    bridge = bridge_of(system)
    connects = system.bridge_stats.connects
    transport = bridge._transport
    if isinstance(transport, MqttLink):
        assert transport.pid is not None
        os.kill(transport.pid, signal.SIGKILL)
    else:
        assert isinstance(transport, InProcessLink)
        sock = transport.session.client.socket()
        assert isinstance(sock, socket.socket)
        sock.shutdown(socket.SHUT_RDWR)
    wait_until(lambda: system.bridge_stats.connects > connects, "the CSMS to reconnect")
    wait_until(system.mqtt_connected.is_set, "the CSMS to subscribe again")


@pytest.fixture(params=[True, False], ids=["process", "in-process"])
def mqtt_process(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


@contextlib.contextmanager
def running_csms(
    url: str, mqtt_process: bool, storage: Any = None
) -> Iterator[tuple[CsmsSystem, FleetWatcher]]:
    watcher = FleetWatcher()
    system = CsmsSystem(
        CsmsConfig(
            mqtt_url=url,
            client_id=f"ack-csms-{uuid.uuid4().hex[:8]}",
            listeners=(watcher,),
            mqtt_process=mqtt_process,
            storage=storage,
        )
    )
    try:
        system.start(wait_connected_s=WAIT_S)
        yield system, watcher
    finally:
        system.stop()
        pykka.ActorRegistry.stop_all()


def test_every_applied_message_is_acknowledged_exactly_once(
    mosquitto_url: str, mqtt_client: MqttClientFactory, mqtt_process: bool
) -> None:
    with running_csms(mosquitto_url, mqtt_process) as (system, watcher):
        station = mqtt_client(mosquitto_url)
        publish(station, birth())
        statuses = [EvseStatus.AVAILABLE, EvseStatus.UNAVAILABLE]
        for seq in range(1, 41):
            publish(station, status(seq, statuses[seq % 2]))
        watcher.wait_for(lambda: watcher.latest.get(KEY, None) is not None, "the EVSE")
        watcher.wait_for(lambda: watcher.state(KEY).seq == 40, "the 40th report applied")
        wait_until(lambda: system.bridge_stats.acked >= 41, "41 acknowledgements")
        assert system.bridge_stats.messages_in == 41
        subscriber = mqtt_client(mosquitto_url)
        subscriber.subscribe("ack/fence")
        fence(system, subscriber)

        drop_connection(system)
        publish(station, status(41, EvseStatus.AVAILABLE))
        watcher.wait_for(lambda: watcher.state(KEY).seq == 41, "a report after the reconnect")
        wait_until(lambda: system.bridge_stats.acked >= 42, "its acknowledgement")
        # Nothing came back: each of the 41 was acknowledged (once: never twice either).
        assert system.bridge_stats.messages_in == 42
        assert system.bridge_stats.acked == 42
        assert system.bridge_stats.malformed == 0


class HeldSessionWrites:
    """``storage.sessions`` whose ``open`` waits for the test (on the recorder's thread)."""

    def __init__(self, sessions: Any) -> None:
        self._sessions = sessions
        self.entered = threading.Event()
        self.go_on = threading.Event()
        self.opened: list[str] = []

    def open(self, session_id: str, **kwargs: Any) -> Any:
        self.entered.set()
        if not self.go_on.wait(WAIT_S):
            raise AssertionError("the test never let the session write go on")
        self.opened.append(session_id)
        return self._sessions.open(session_id, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sessions, name)


def test_a_session_start_is_acknowledged_after_its_write_and_redelivered_if_the_link_dies(
    mosquitto_url: str,
    mqtt_client: MqttClientFactory,
    mqtt_process: bool,
    db_url: str | None,
    tmp_path: Path,
) -> None:
    storage = open_test_storage(tmp_path / "csms", db_url)
    held = HeldSessionWrites(storage.sessions)
    storage.sessions = held  # type: ignore[assignment]
    try:
        with running_csms(mosquitto_url, mqtt_process, storage) as (system, watcher):
            station = mqtt_client(mosquitto_url)
            publish(station, birth())
            publish(station, status(1, EvseStatus.AVAILABLE))
            watcher.wait_for(watcher.status_is(KEY, "Available"), "Available")
            wait_until(lambda: system.bridge_stats.acked == 2, "birth and Available acked")

            publish(station, status(2, EvseStatus.CHARGING, session="s-ack-1"))
            watcher.wait_for(watcher.status_is(KEY, "Charging"), "Charging (the EVSE applied it)")
            assert held.entered.wait(WAIT_S), "the session recorder never wrote the session"
            assert system.bridge_stats.acked == 2, "acknowledged before the session row"

            subscriber = mqtt_client(mosquitto_url)
            subscriber.subscribe("ack/fence")
            fence(system, subscriber)  # the 2 acks are at the broker; the 3rd is not sent
            in_before = system.bridge_stats.messages_in
            drop_connection(system)
            wait_until(
                lambda: system.bridge_stats.messages_in == in_before + 1,
                "the broker to redeliver the unacknowledged session start",
            )
            wait_until(lambda: system.bridge_stats.acked == 3, "the duplicate to be acked")
            held.go_on.set()  # the first delivery's write ends: its connection is gone

            publish(station, status(3, EvseStatus.FINISHING, session="s-ack-1"))
            watcher.wait_for(watcher.status_is(KEY, "Finishing"), "Finishing")
            wait_until(lambda: system.bridge_stats.acked == 4, "the session end acked")
            assert system.bridge_stats.messages_in == in_before + 2
            assert watcher.state(KEY).seq == 3
        assert held.opened == ["s-ack-1"], "the session was opened twice"
        session = storage.sessions.get("s-ack-1")
        assert session is not None
        assert session.ended_at is not None
    finally:
        storage.close()
