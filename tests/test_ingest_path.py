"""The ingest path's three building blocks, each driven on its own with real threads:
:class:`actors.inbox.BatchInbox` (a producer thread hands items to a Pykka actor in
batches), :class:`actors.mqtt_client.BufferedClient` (paho reading the socket in 64 KiB
chunks, against a real Mosquitto) and :class:`actors.evse.EvseActor` (one Pykka actor per
EVSE, with its own order, identity and failure)."""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import paho.mqtt.client as mqtt
import pykka
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

import actors.mqtt_client
from actors.evse import EvseActor, EvseBatch
from actors.evse_state import EvseState
from actors.inbox import BatchInbox
from actors.messages import (
    EvseChangedBatch,
    EvseCrashed,
    GetState,
    InboundReady,
    Publish,
    SendCommand,
)
from actors.mqtt_client import BufferedClient, new_client
from protocol import (
    CommandName,
    CommandRequest,
    EvseId,
    EvseInfo,
    EvseStatus,
    MeterValues,
    SessionId,
    StationId,
    StatusReport,
    parse,
)
from storage.errors import ActorUnavailableError
from tests.brokers import MqttClientFactory, parse_mqtt_url
from tests.support import POISON_SEQ, evse_state, poison_evse_logic, wire_id

WAIT_S = 20.0
"""Upper bound of every wait in this module (pytest-timeout stops the test anyway)."""

T = TypeVar("T")


@pytest.fixture(autouse=True)
def _stop_actors() -> Iterator[None]:
    try:
        yield
    finally:
        pykka.ActorRegistry.stop_all()


# ============================================================================ BatchInbox


@dataclass(frozen=True, slots=True, kw_only=True)
class GetRecord:
    """Query the :class:`InboxReceiver`: what it took so far."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Record:
    items: tuple[Any, ...]
    notices: int
    batch_sizes: tuple[int, ...]


@dataclass(frozen=True)
class ReceiverSignals:
    """Set by the :class:`InboxReceiver` on its thread, waited on by the test."""

    all_in: threading.Event = field(default_factory=threading.Event)
    blocked: threading.Event = field(default_factory=threading.Event)


class InboxReceiver(pykka.ThreadingActor):
    """Takes everything an ``InboundReady`` points at and records it (on its own thread).

    With a ``gate``, its first notice sets ``blocked`` and waits for the gate before taking:
    a receiver busy with something else while the producer keeps putting.
    """

    def __init__(
        self, signals: ReceiverSignals, expected: int, gate: threading.Event | None = None
    ) -> None:
        super().__init__()
        self._signals = signals
        self._expected = expected
        self._gate = gate
        self._items: list[Any] = []
        self._notices = 0
        self._batch_sizes: list[int] = []

    def on_receive(self, message: Any) -> Any:
        match message:
            case InboundReady(inbox=inbox):
                self._notices += 1
                if self._gate is not None and self._notices == 1:
                    self._signals.blocked.set()
                    self._gate.wait(WAIT_S)
                batch = inbox.take()
                self._batch_sizes.append(len(batch))
                self._items.extend(batch)
                if len(self._items) >= self._expected:
                    self._signals.all_in.set()
            case GetRecord():
                return Record(
                    items=tuple(self._items),
                    notices=self._notices,
                    batch_sizes=tuple(self._batch_sizes),
                )
        return None


def start_receiver(
    expected: int, gate: threading.Event | None = None
) -> tuple[pykka.ActorRef[Any], ReceiverSignals]:
    signals = ReceiverSignals()
    return InboxReceiver.start(signals, expected, gate), signals


def record_of(receiver: pykka.ActorRef[Any]) -> Record:
    """What the receiver took, once it has handled every message told to it before."""
    record = receiver.ask(GetRecord(), timeout=WAIT_S)
    assert isinstance(record, Record)
    return record


def test_every_item_from_a_producer_thread_arrives_once_and_in_order() -> None:
    n = 20_000
    ref, signals = start_receiver(n)
    inbox = BatchInbox(ref)

    def produce() -> None:
        for i in range(n):
            inbox.put(i)

    producer = threading.Thread(target=produce, name="inbox-producer")
    producer.start()
    producer.join(WAIT_S)
    assert not producer.is_alive(), "the producer never finished putting"
    assert signals.all_in.wait(WAIT_S), "not every item reached the receiver"

    # The producer has returned, so all its notices are queued before this ask.
    record = record_of(ref)
    assert record.items == tuple(range(n))
    assert sum(record.batch_sizes) == n
    assert len(inbox) == 0


def test_a_slow_receiver_is_told_once_for_a_whole_burst() -> None:
    n = 1_000
    gate = threading.Event()
    ref, signals = start_receiver(n, gate)
    inbox = BatchInbox(ref)
    try:
        inbox.put(0)
        assert signals.blocked.wait(WAIT_S), "the receiver never got its first notice"
        for i in range(1, n):
            inbox.put(i)
        assert len(inbox) == n
    finally:
        gate.set()
    assert signals.all_in.wait(WAIT_S), "not every item reached the receiver"

    record = record_of(ref)
    assert record.items == tuple(range(n))
    assert record.notices == 1, "a notice already on its way must not be sent again"
    assert record.batch_sizes == (n,)


def test_a_take_stops_at_the_limit_and_the_receiver_is_told_again() -> None:
    gate = threading.Event()
    ref, signals = start_receiver(25, gate)
    inbox = BatchInbox(ref, limit=10)
    try:
        inbox.put(0)
        assert signals.blocked.wait(WAIT_S), "the receiver never got its first notice"
        for i in range(1, 25):
            inbox.put(i)
    finally:
        gate.set()
    assert signals.all_in.wait(WAIT_S), "the items past the limit never arrived"

    record = record_of(ref)
    assert record.items == tuple(range(25))
    assert record.batch_sizes == (10, 10, 5)
    assert record.notices == 3


def test_putting_for_a_stopped_receiver_raises_actor_dead() -> None:
    ref, _signals = start_receiver(1)
    inbox = BatchInbox(ref)
    ref.stop(timeout=WAIT_S)
    with pytest.raises(pykka.ActorDeadError):
        inbox.put("late")


# ============================================================================ BufferedClient

TOPIC = "ingest-test/burst"
ECHO_TOPIC = "ingest-test/echo"
BIG = 70_000
"""A payload bigger than one 64 KiB read."""


def burst_payloads(n: int, seed: int = 20_240) -> list[bytes]:
    """``n`` random payloads from 1 byte to 70 KB: mostly small, so one read holds many
    packets and cuts the last one, with a big one (more than a whole read) every 97th."""
    rng = random.Random(seed)
    sizes = [1 + (i * 7_919) % 3_000 for i in range(n)]
    for i in range(13, n, 97):
        sizes[i] = rng.randint(60_000, BIG)
    sizes[n // 2] = BIG
    sizes[0] = 1
    return [rng.randbytes(size) for size in sizes]


class BurstSubscriber:
    """A :class:`BufferedClient` (its own network thread, ``loop_start``) subscribed to one
    topic; its callbacks run on the network thread and only record."""

    def __init__(self, url: str, expected: int) -> None:
        self.host, self.port = parse_mqtt_url(url)
        self.expected = expected
        self.client = BufferedClient(
            CallbackAPIVersion.VERSION2,
            client_id=f"burst-{uuid.uuid4().hex[:12]}",
            protocol=mqtt.MQTTv311,
        )
        self.payloads: list[bytes] = []
        self.topics: set[str] = set()
        self.all_in = threading.Event()
        self.on_count: Callable[[int], None] = lambda count: None
        self._subscribed = threading.Event()
        self._suback_ok = False
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if not reason_code.is_failure:
            client.subscribe(TOPIC, qos=1)

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: object,
        mid: int,
        reason_codes: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        self._suback_ok = not any(rc.is_failure for rc in reason_codes)
        self._subscribed.set()

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        self.topics.add(msg.topic)
        self.payloads.append(bytes(msg.payload))
        count = len(self.payloads)
        self.on_count(count)
        if count >= self.expected:
            self.all_in.set()

    def start(self) -> BurstSubscriber:
        self.client.connect(self.host, self.port, keepalive=60)
        self.client.loop_start()
        assert self._subscribed.wait(WAIT_S), "no SUBACK for the burst topic"
        assert self._suback_ok, "the broker refused the subscription"
        return self

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def publish_burst(url: str, payloads: list[bytes]) -> None:
    """A plain paho client publishes every payload at QoS 1 without waiting in between,
    then waits for every PUBACK."""
    host, port = parse_mqtt_url(url)
    publisher = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"burst-pub-{uuid.uuid4().hex[:12]}",
        protocol=mqtt.MQTTv311,
    )
    publisher.max_inflight_messages_set(200)
    connected = threading.Event()
    publisher.on_connect = lambda client, userdata, flags, rc, props: connected.set()
    publisher.connect(host, port, keepalive=60)
    publisher.loop_start()
    try:
        assert connected.wait(WAIT_S), "the publisher never connected"
        infos = [publisher.publish(TOPIC, payload, qos=1) for payload in payloads]
        deadline = time.monotonic() + WAIT_S
        for info in infos:
            info.wait_for_publish(max(0.0, deadline - time.monotonic()))
        assert all(info.is_published() for info in infos), "the broker did not ack the burst"
    finally:
        publisher.disconnect()
        publisher.loop_stop()


@pytest.fixture
def counted_reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The ``bufsize`` of every real socket read a :class:`BufferedClient` makes."""
    reads: list[int] = []
    real_sock_recv = mqtt.Client._sock_recv

    def sock_recv(self: mqtt.Client, bufsize: int) -> bytes:
        if isinstance(self, BufferedClient):
            reads.append(bufsize)
        return real_sock_recv(self, bufsize)

    monkeypatch.setattr(mqtt.Client, "_sock_recv", sock_recv)
    return reads


def test_this_paho_supports_the_buffered_read_path() -> None:
    assert actors.mqtt_client.SUPPORTED is True
    client = new_client(CallbackAPIVersion.VERSION2, client_id="supported-check")
    assert isinstance(client, BufferedClient)


def test_buffered_subscriber_receives_a_qos1_burst_whole_and_in_order(
    mosquitto_url: str, counted_reads: list[int]
) -> None:
    payloads = burst_payloads(3_000)
    assert max(map(len, payloads)) > 65_536, "one packet must not fit in one read"
    subscriber = BurstSubscriber(mosquitto_url, expected=len(payloads)).start()
    try:
        publish_burst(mosquitto_url, payloads)
        assert subscriber.all_in.wait(WAIT_S), (
            f"{len(subscriber.payloads)} of {len(payloads)} messages arrived"
        )
    finally:
        subscriber.close()

    assert subscriber.topics == {TOPIC}
    assert len(subscriber.payloads) == len(payloads)
    first_bad = next(
        (
            i
            for i, (got, sent) in enumerate(zip(subscriber.payloads, payloads, strict=True))
            if got != sent
        ),
        None,
    )
    assert first_bad is None, f"message {first_bad} differs (size {len(payloads[first_bad])})"
    # Stock paho reads at least three times per message (type, length, body); reading
    # 64 KiB at a time needs about one read per message even when each comes alone.
    assert set(counted_reads) == {65_536}
    assert len(counted_reads) < 2 * len(payloads), f"{len(counted_reads)} socket reads"


def test_buffered_client_publishes_from_another_thread_while_it_receives(
    mosquitto_url: str, mqtt_client: MqttClientFactory
) -> None:
    echo = mqtt_client(mosquitto_url)
    echo.subscribe(ECHO_TOPIC, qos=1)
    payloads = burst_payloads(3_000, seed=7)
    subscriber = BurstSubscriber(mosquitto_url, expected=len(payloads))
    receiving = threading.Event()
    subscriber.on_count = lambda count: receiving.set() if count >= 20 else None
    received_when_published: list[int] = []
    failures: list[BaseException] = []

    def publish_echoes() -> None:
        try:
            assert receiving.wait(WAIT_S), "the burst never started arriving"
            infos = []
            for i in range(20):
                received_when_published.append(len(subscriber.payloads))
                infos.append(subscriber.client.publish(ECHO_TOPIC, f"echo-{i}", qos=1))
            for info in infos:
                info.wait_for_publish(WAIT_S)
                assert info.is_published(), f"echo {info.mid} not acknowledged"
        except BaseException as exc:  # reported on the test thread
            failures.append(exc)

    side = threading.Thread(target=publish_echoes, name="echo-publisher")
    subscriber.start()
    try:
        side.start()
        publish_burst(mosquitto_url, payloads)
        side.join(WAIT_S)
        assert not side.is_alive(), "the echo publisher is stuck"
        assert not failures, failures
        assert subscriber.all_in.wait(WAIT_S), "the burst did not all arrive"
    finally:
        subscriber.close()

    assert received_when_published[0] < len(payloads), "published only after the burst"
    assert [echo.get(timeout=WAIT_S).payload for _ in range(20)] == [
        f"echo-{i}".encode() for i in range(20)
    ]
    assert subscriber.payloads == payloads


# ============================================================================ EvseActor

SID = StationId("st-ingest")
A, B = EvseId("st-ingest.1"), EvseId("st-ingest.2")  # the CSMS's ids; the station says 1, 2


class Flush:
    """Asked of a :class:`RecordingActor`: answered once every earlier ``tell`` is recorded."""


class MessageLog:
    """What a :class:`RecordingActor` received, readable from the test thread."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._messages: list[Any] = []

    def append(self, message: Any) -> None:
        with self._cond:
            self._messages.append(message)
            self._cond.notify_all()

    def of_type(self, cls: type[T]) -> list[T]:
        with self._cond:
            return [m for m in self._messages if isinstance(m, cls)]

    def wait_for(self, cls: type[T], what: str) -> T:
        """The first message of type ``cls``, waiting up to ``WAIT_S`` for it."""
        with self._cond:
            if not self._cond.wait_for(
                lambda: any(isinstance(m, cls) for m in self._messages), WAIT_S
            ):
                raise AssertionError(f"timed out after {WAIT_S} s waiting for {what}")
            return next(m for m in self._messages if isinstance(m, cls))


class RecordingActor(pykka.ThreadingActor):
    """Stands in for the supervisor, a subscriber or the bridge: records every ``tell``."""

    def __init__(self, log: MessageLog) -> None:
        super().__init__()
        self.log = log

    def on_receive(self, message: Any) -> Any:
        if not isinstance(message, Flush):
            self.log.append(message)
        return None


@dataclass
class Recorder:
    ref: pykka.ActorRef[Any]
    log: MessageLog

    def flush(self) -> None:
        self.ref.ask(Flush(), timeout=WAIT_S)


def start_recorder() -> Recorder:
    log = MessageLog()
    return Recorder(ref=RecordingActor.start(log), log=log)


@dataclass
class ActorRig:
    supervisor: Recorder
    subscriber: Recorder
    bridge: Recorder

    def evse(self, evse_id: EvseId, state: EvseState | None = None) -> pykka.ActorRef[Any]:
        """Start an EVSE actor for ``evse_id`` (from ``state``, else a fresh Available one of
        an online station), as the supervisor does."""
        fresh = evse_state(evse_id, status=EvseStatus.AVAILABLE)
        return EvseActor.start(
            state or fresh,
            bridge=self.bridge.ref,
            supervisor=self.supervisor.ref,
            subscribers=[self.subscriber.ref],
        )

    def batches(self) -> list[EvseChangedBatch]:
        """Every batch the subscriber got so far (after all the actors have handled)."""
        self.subscriber.flush()
        return self.subscriber.log.of_type(EvseChangedBatch)


@pytest.fixture
def rig() -> Iterator[ActorRig]:
    yield ActorRig(
        supervisor=start_recorder(), subscriber=start_recorder(), bridge=start_recorder()
    )
    pykka.ActorRegistry.stop_all()


@pytest.fixture
def poisonable(monkeypatch: pytest.MonkeyPatch) -> None:
    """An EVSE actor raises on a report with ``seq == POISON_SEQ`` (a bug, simulated)."""
    poison_evse_logic(monkeypatch)


def status(
    evse: EvseId, st: EvseStatus, seq: int, energy: float = 0.0, session: str | None = None
) -> StatusReport:
    info = EvseInfo(
        evse_id=wire_id(evse),
        status=st,
        energy_wh=energy,
        session_id=SessionId(session) if session else None,
    )
    return StatusReport(station_id=SID, info=info, seq=seq, ts=seq)


def meter(evse: EvseId, seq: int, energy: float, session: str) -> MeterValues:
    return MeterValues(
        station_id=SID,
        evse_id=wire_id(evse),
        session_id=SessionId(session),
        power_w=11_000,
        energy_wh=energy,
        soc=None,
        seq=seq,
        ts=seq,
    )


def info_command(reply: pykka.Future[Any]) -> SendCommand:
    return SendCommand(command=CommandName.INFO, args=None, reply=reply)


def test_an_evse_actor_is_a_pykka_actor_answering_get_state(rig: ActorRig) -> None:
    state = evse_state(A, max_power_w=50_000, connector="CCS")
    ref = rig.evse(A, state)
    assert isinstance(ref, pykka.ActorRef)
    assert ref.actor_class is EvseActor
    assert ref.is_alive()
    assert ref.ask(GetState(), timeout=WAIT_S) == state
    assert ref in pykka.ActorRegistry.get_by_class(EvseActor)


def test_a_batch_is_applied_in_order_and_fanned_out_as_one_batch(rig: ActorRig) -> None:
    a = rig.evse(A)
    a.tell(
        EvseBatch(
            items=[
                status(A, EvseStatus.AVAILABLE, 1),
                status(A, EvseStatus.CHARGING, 3, energy=100, session="s-1"),
                meter(A, 4, energy=250, session="s-1"),
                meter(A, 3, energy=900, session="s-1"),  # stale: refused, not fanned out
                meter(A, 6, energy=400, session="s-1"),
            ]
        )
    )
    assert a.ask(GetState(), timeout=WAIT_S).energy_wh == 400

    batches = rig.batches()
    assert len(batches) == 1, "one batch in, one EvseChangedBatch out per subscriber"
    changes = [(e.state.evse_id, e.state.status, e.state.energy_wh) for e in batches[0].events]
    assert changes == [
        (A, EvseStatus.AVAILABLE, 0),
        (A, EvseStatus.CHARGING, 100),
        (A, EvseStatus.CHARGING, 250),
        (A, EvseStatus.CHARGING, 400),
    ]
    # The supervisor hears only of status and session changes (not plain meter updates).
    rig.supervisor.flush()
    told = [
        e.state.energy_wh for b in rig.supervisor.log.of_type(EvseChangedBatch) for e in b.events
    ]
    assert told == [100]  # the rig's EVSE was Available already: one status change


def test_a_command_inside_a_batch_runs_in_batch_order(rig: ActorRig) -> None:
    a = rig.evse(A, evse_state(A))  # Offline until its station speaks
    refused: pykka.Future[Any] = pykka.ThreadingFuture()
    sent: pykka.Future[Any] = pykka.ThreadingFuture()
    a.tell(
        EvseBatch(
            items=[
                info_command(refused),  # before the report: the station is not known online
                status(A, EvseStatus.AVAILABLE, 1),
                info_command(sent),
            ]
        )
    )
    assert refused.get(timeout=WAIT_S).reason == "offline"
    rig.bridge.log.wait_for(Publish, "the second command")
    a.ask(GetState(), timeout=WAIT_S)
    rig.bridge.flush()
    assert len(rig.bridge.log.of_type(Publish)) == 1, "only the second one was sent"


def test_a_command_to_an_offline_evse_is_refused_at_once_and_never_published(
    rig: ActorRig,
) -> None:
    ref = rig.evse(A, evse_state(A))  # Offline until its station speaks
    reply: pykka.Future[Any] = pykka.ThreadingFuture()
    ref.tell(info_command(reply))
    outcome = reply.get(timeout=WAIT_S)
    assert (outcome.accepted, outcome.reason) == (False, "offline")
    rig.bridge.flush()
    assert rig.bridge.log.of_type(Publish) == []


def test_a_command_names_the_stations_own_evse_id_and_expires(rig: ActorRig) -> None:
    ref = rig.evse(A)
    ref.tell(info_command(pykka.ThreadingFuture()))
    ref.ask(GetState(), timeout=WAIT_S)
    published = rig.bridge.log.wait_for(Publish, "the command")
    request = parse(published.topic, published.payload)
    assert isinstance(request, CommandRequest)
    assert (request.station_id, request.evse_id) == (SID, "1")
    assert request.expires_at - request.ts == 10_000  # the command's time-out
    assert not published.retain


@pytest.mark.usefixtures("poisonable")
def test_an_evse_actor_crashing_on_a_tell_ends_alone_and_the_supervisor_is_told(
    rig: ActorRig,
) -> None:
    a, b = rig.evse(A), rig.evse(B)
    a.tell(EvseBatch(items=[status(A, EvseStatus.AVAILABLE, 1)]))
    b.tell(EvseBatch(items=[status(B, EvseStatus.AVAILABLE, 2)]))
    last_good = a.ask(GetState(), timeout=WAIT_S)
    pending: pykka.Future[Any] = pykka.ThreadingFuture()
    a.tell(info_command(pending))

    a.tell(EvseBatch(items=[status(A, EvseStatus.PREPARING, POISON_SEQ)]))
    queued: pykka.Future[Any] = pykka.ThreadingFuture()
    a.tell(EvseBatch(items=[info_command(queued)]))  # behind the crash in a's inbox
    b.tell(EvseBatch(items=[status(B, EvseStatus.PREPARING, 3)]))

    crash = rig.supervisor.log.wait_for(EvseCrashed, "the supervisor to hear of the crash")
    assert crash.evse_id == A
    assert crash.last_state == last_good
    assert crash.actor_urn == a.actor_urn
    assert "simulated bug" in crash.error
    assert len(rig.supervisor.log.of_type(EvseCrashed)) == 1

    assert a.actor_stopped.wait(WAIT_S)
    with pytest.raises(pykka.ActorDeadError):
        a.ask(GetState(), timeout=WAIT_S)
    with pytest.raises(ActorUnavailableError):
        pending.get(timeout=WAIT_S)
    with pytest.raises(ActorUnavailableError):
        queued.get(timeout=WAIT_S)

    assert b.is_alive()
    assert b.ask(GetState(), timeout=WAIT_S).status == EvseStatus.PREPARING


def test_stopping_an_evse_actor_fails_its_pending_and_queued_commands(rig: ActorRig) -> None:
    a = rig.evse(A)
    pending: pykka.Future[Any] = pykka.ThreadingFuture()
    a.tell(info_command(pending))
    a.ask(GetState(), timeout=WAIT_S)

    a.stop(timeout=WAIT_S)

    assert not a.is_alive()
    with pytest.raises(ActorUnavailableError):
        pending.get(timeout=WAIT_S)
    with pytest.raises(pykka.ActorDeadError):
        a.tell(GetState())
    with pytest.raises(pykka.ActorDeadError):
        a.ask(GetState(), timeout=WAIT_S)
