"""The ingest path's per-EVSE building block, driven on its own with real threads:
:class:`actors.evse.EvseActor` (one Pykka actor per EVSE, with its own order, identity and
failure: batches applied in order, commands in batch order, a crash that ends it alone)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import pykka
import pytest

from actors.evse import EvseActor, EvseBatch
from actors.evse_state import EvseState
from actors.messages import (
    EvseChangedBatch,
    EvseCrashed,
    GetState,
    OperatorAlert,
    Publish,
    SendCommand,
)
from protocol import (
    CommandRequest,
    EvseId,
    EvseInfo,
    EvseStatus,
    InfoArgs,
    MeterValues,
    SessionId,
    StationId,
    StatusReport,
    parse,
)
from storage.errors import ActorUnavailableError
from tests import ingest_support
from tests.ingest_support import WAIT_S
from tests.support import POISON_SEQ, evse_state, poison_evse_logic, wire_id

_stop_actors = ingest_support._stop_actors


T = TypeVar("T")


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
    return SendCommand(args=InfoArgs(), reply=reply)


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


def test_an_alert_subscriber_hears_the_evses_alerts_and_none_of_its_changes(
    rig: ActorRig,
) -> None:
    alert_log = start_recorder()
    a = EvseActor.start(
        evse_state(A, status=EvseStatus.AVAILABLE),
        bridge=rig.bridge.ref,
        supervisor=rig.supervisor.ref,
        subscribers=[rig.subscriber.ref],
        alert_subscribers=[alert_log.ref],
    )
    a.tell(
        EvseBatch(
            items=[
                status(A, EvseStatus.CHARGING, 1, energy=100, session="s-1"),
                meter(A, 2, energy=250, session="s-1"),
                status(A, EvseStatus.AVAILABLE, 3, energy=250),
                status(A, EvseStatus.FINISHING, 4, energy=250, session="s-2"),  # not expected
            ]
        )
    )
    assert a.ask(GetState(), timeout=WAIT_S).status == EvseStatus.FINISHING

    alert_log.flush()
    alerts = alert_log.log.of_type(OperatorAlert)
    assert [(x.kind, x.evse_id) for x in alerts] == [("inconsistent_report", A)]
    assert alert_log.log.of_type(EvseChangedBatch) == [], "the alert log woke for changes"
    # Every subscriber still hears both: the changes and the alert.
    assert len([e for b in rig.batches() for e in b.events]) == 4
    assert [x.kind for x in rig.subscriber.log.of_type(OperatorAlert)] == ["inconsistent_report"]


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
