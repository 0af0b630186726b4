"""The ingest path's first building block, driven on its own with real threads:
:class:`actors.inbox.BatchInbox` (a producer thread hands items to a Pykka actor in batches, in
order, telling a slow receiver once per burst), and the actors' lean mailbox."""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass, field
from typing import Any

import pykka
import pytest

from actors.inbox import BatchInbox, LeanThreadingActor
from actors.messages import InboundReady
from tests import ingest_support
from tests.ingest_support import WAIT_S

_stop_actors = ingest_support._stop_actors


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


# ============================================================================ LeanThreadingActor


class Gated(LeanThreadingActor):
    """Records what it is told; ``"wait"`` holds it until the gate opens; ``"seen"`` asks."""

    def __init__(self, gate: threading.Event) -> None:
        super().__init__()
        self.gate = gate
        self.seen: list[Any] = []

    def on_receive(self, message: Any) -> Any:
        if message == "wait":
            assert self.gate.wait(WAIT_S)
        elif message == "seen":
            return list(self.seen)
        else:
            self.seen.append(message)
        return None


def test_a_lean_actor_keeps_pykkas_contract_on_its_simple_queue() -> None:
    gate = threading.Event()
    ref = Gated.start(gate)
    assert isinstance(ref.actor_inbox, queue.SimpleQueue)
    for i in range(500):
        ref.tell(i)
    assert ref.ask("seen", timeout=WAIT_S) == list(range(500)), "tells in order, then the ask"

    ref.tell("wait")
    stopped = ref.stop(block=False)  # queued behind "wait"
    late = ref.ask("seen", block=False)  # queued behind the stop: never handled
    gate.set()
    assert stopped.get(timeout=WAIT_S) is True
    with pytest.raises(pykka.ActorDeadError):
        late.get(timeout=WAIT_S)
    assert not ref.is_alive()
