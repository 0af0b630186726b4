"""One Pykka actor per EVSE: the EVSE's own middleware.

:class:`~actors.evse_logic.Evse` is the whole behaviour as a pure step (state machine,
commands, time-outs; no threads, no clock). :class:`EvseActor` is the EVSE's actor (a
:class:`pykka.ThreadingActor`): it owns its ``Evse`` and applies the effects its steps return;
it takes the station's messages for this EVSE in order (one :class:`EvseBatch` per burst, from
the ingest router or the supervisor), sends its commands, and routes what changed to the
listener hosts, the reservation actor and the supervisor. It fails alone: an exception while it
handles a ``tell`` stops this actor only (its pending and queued commands fail at once), the
supervisor is told with :class:`~actors.messages.EvseCrashed` and starts a new actor from the
last state; an exception in an ``ask`` goes back to the caller, as in Pykka.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pykka

from actors.acks import AppliedLatch
from actors.clock import Scheduler, TimerHandle
from actors.evse_logic import (
    Alert,
    CancelTimer,
    Effect,
    Evse,
    Observe,
    Reject,
    Resolve,
    SendRequest,
    StartTimer,
    TimedOut,
    new_correlation_id,
)
from actors.evse_state import EvseState
from actors.evse_transition import Ignored, SessionClosed, SessionOpened, StateChanged
from actors.inbox import BatchInbox, LeanThreadingActor
from actors.messages import (
    CommandTimedOut,
    EvseChanged,
    EvseChangedBatch,
    EvseCrashed,
    GetState,
    OperatorAlert,
    Publish,
    SendCommand,
)
from actors.scheduling import run_as_batch_thread
from protocol import (
    CommandName,
    CorrelationId,
    EvseId,
    encode,
)
from storage.errors import ActorUnavailableError, UnknownEvseError

__all__ = [
    "Evse",
    "EvseActor",
    "EvseBatch",
    "RetireEvse",
    "new_correlation_id",
]

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------- messages


@dataclass(frozen=True, slots=True)
class EvseBatch:
    """Ingest router or supervisor -> EVSE actor, handled in order: this EVSE's station
    messages of one burst, commands the supervisor sends (``info`` to reconcile) and the
    :class:`AppliedLatch` of a raw MQTT batch after its last message for this EVSE
    (:mod:`actors.acks`)."""

    items: Sequence[Any]


@dataclass(frozen=True, slots=True)
class RetireEvse:
    """Supervisor -> EVSE actor: the station no longer announces this EVSE; the actor ends."""


class EvseActor(LeanThreadingActor):
    """One EVSE's actor: its state machine, its commands and the routing of its events."""

    def __init__(
        self,
        state: EvseState,
        *,
        bridge: pykka.ActorRef[Any] | None,
        supervisor: Sink | None,
        subscribers: Sequence[Sink] = (),
        status_subscribers: Sequence[Sink] = (),
        alert_subscribers: Sequence[Sink] = (),
        timers: Scheduler | None = None,
        correlation_ids: Callable[[], CorrelationId] = new_correlation_id,
        clock_ms: Callable[[], int] | None = None,
        observe_command: Callable[[CommandName, float | None], None] | None = None,
        session_writer: Sink | None = None,
    ) -> None:
        """``supervisor``, ``subscribers`` and ``session_writer`` are actor refs or, shared
        by every EVSE actor, a :class:`~actors.inbox.BatchInbox` in front of each (what the
        supervisor passes: a subscriber then wakes once per burst, not once per EVSE);
        ``subscribers`` hear every change and alert, ``status_subscribers`` (like the
        supervisor) only status and session changes, not plain meter updates,
        ``alert_subscribers`` only alerts (the alert log: it would otherwise wake for every
        meter value);
        ``observe_command(command, seconds)`` gets each command's round trip (``None``: it
        timed out), on this actor's thread (the metrics); ``session_writer``: see
        :meth:`_release_latches`."""
        super().__init__()
        self.evse = Evse(state=state, new_id=correlation_ids)
        self._timer_handles: dict[CorrelationId, TimerHandle] = {}
        self.evse_id = state.evse_id
        self._changed: list[EvseChanged] = []
        self._observe_command = observe_command
        self._bridge = bridge
        self._supervisor = supervisor
        self._subscribers = list(subscribers)
        self._status_subscribers = list(status_subscribers)
        self._alert_subscribers = list(alert_subscribers)
        self._timers = timers
        self._clock_ms = clock_ms or _wall_ms
        self._session_writer = session_writer
        self._latches: list[AppliedLatch] = []

    def __repr__(self) -> str:
        return f"EvseActor({self.evse_id}, {self.actor_urn})"

    # ------------------------------------------------------------------ Pykka side

    def on_start(self) -> None:
        run_as_batch_thread()  # woken for every station message (actors.scheduling)

    def on_receive(self, message: Any) -> Any:
        """Runs on this actor's thread, one message at a time."""
        result = None
        if isinstance(message, EvseBatch):
            for item in message.items:
                self._handle(item)
        else:
            result = self._handle(message)
        changed = self._changed
        self._fan_out()
        self._release_latches(changed)
        return result

    def _handle(self, message: Any) -> Any:
        match message:
            case AppliedLatch():
                self._latches.append(message)
            case CommandTimedOut(correlation_id=cid):
                self._step(TimedOut(cid))
            case GetState():
                return self.evse.state
            case RetireEvse():
                retired = UnknownEvseError(f"EVSE {self.evse_id} was retired")
                self._apply(self.evse.fail_all(retired))
                self.stop()
            case _:
                self._step(message)
        return None

    def on_failure(self, exception_type: Any, exception_value: Any, traceback: Any) -> None:
        """This EVSE alone ends: its commands fail now, and the supervisor decides."""
        self._end(ActorUnavailableError(f"EVSE {self.evse_id} restarting"))
        if self._supervisor is not None:
            with contextlib.suppress(pykka.ActorDeadError):
                _deliver(
                    self._supervisor,
                    EvseCrashed(
                        evse_id=self.evse_id,
                        last_state=self.evse.state,
                        error=f"{exception_type.__name__}: {exception_value}",
                        actor_urn=self.actor_urn,
                    ),
                )

    def on_stop(self) -> None:
        self._end(ActorUnavailableError("the CSMS is stopping"))

    def _end(self, error: Exception) -> None:
        """Fail the pending commands, and those still queued: Pykka answers the asks left in
        a stopped actor's inbox, not the replies a command carries inside a ``tell``."""
        self._apply(self.evse.fail_all(error))
        kept = []
        while not self.actor_inbox.empty():  # this thread is the only reader: get() won't block
            envelope = self.actor_inbox.get()
            _fail_commands_in(envelope.message, self.evse_id)
            kept.append(envelope)
        for envelope in kept:  # Pykka's teardown answers the asks among them
            self.actor_inbox.put(envelope)

    # ------------------------------------------------------------------ effects

    def _step(self, message: Any) -> None:
        self._apply(self.evse.step(message, self._clock_ms()))

    def _apply(self, effects: Sequence[Effect]) -> None:
        """Carry out what the logic decided, in order (:mod:`actors.evse_logic`)."""
        for effect in effects:
            match effect:
                case EvseChanged():
                    self._changed.append(effect)
                case SendRequest(request=request):
                    if self._bridge is None:
                        self._step(TimedOut(request.id))
                        continue
                    topic, payload, retain = encode(request)
                    log.info("Evse %s: sending %s (%s)", self.evse_id, request.command, request.id)
                    self._bridge.tell(Publish(topic=topic, payload=payload, retain=retain))
                case StartTimer(correlation_id=cid, after_s=after_s):
                    if self._timers is not None:
                        self._timer_handles[cid] = self._timers.call_later(
                            after_s, functools.partial(_tell_timeout, self.actor_ref, cid)
                        )
                case CancelTimer(correlation_id=cid):
                    handle = self._timer_handles.pop(cid, None)
                    if handle is not None:
                        handle.cancel()
                case Resolve(reply=reply, outcome=outcome):
                    reply.set(outcome)
                case Reject(reply=reply, error=error):
                    reply.set_exception((type(error), error, None))
                case Observe(command=command, seconds=seconds):
                    if self._observe_command is not None:
                        self._observe_command(command, seconds)
                case Alert(kind=kind, message=text):
                    self._alert_about(self.evse.state, kind, text)

    def _alert_about(self, state: EvseState, kind: str, message: str) -> None:
        """Log ``message`` and tell every subscriber, as an operator alert about this EVSE."""
        log.warning(message)
        self._alert(
            OperatorAlert(
                kind=kind,
                evse_id=state.evse_id,
                station_id=state.station_id,
                ts=self._clock_ms(),
                message=message,
            )
        )

    def _alert(self, alert: OperatorAlert) -> None:
        for subscriber in [*self._subscribers, *self._alert_subscribers]:
            with contextlib.suppress(pykka.ActorDeadError):
                _deliver(subscriber, alert)

    def _fan_out(self) -> None:
        """One batch per subscriber; the supervisor and the status subscribers hear only of
        status and session changes."""
        if not self._changed:
            return
        changed, self._changed = tuple(self._changed), []
        notable = tuple(filter(_notable, changed))
        if notable:
            batch = EvseChangedBatch(events=notable)
            if self._supervisor is not None:
                with contextlib.suppress(pykka.ActorDeadError):
                    _deliver(self._supervisor, batch)
            self._tell_all(self._status_subscribers, batch)
        self._tell_all(self._subscribers, EvseChangedBatch(events=changed))

    @staticmethod
    def _tell_all(subscribers: list[Sink], batch: EvseChangedBatch) -> None:
        for subscriber in list(subscribers):
            try:
                _deliver(subscriber, batch)
            except pykka.ActorDeadError:
                log.info("dropping dead subscriber %s", subscriber)
                subscribers.remove(subscriber)

    # ------------------------------------------------------------------ acks (actors.acks)

    def _release_latches(self, changed: Sequence[EvseChanged]) -> None:
        """The batches whose latches arrived are applied here (state changed, changes fanned
        out). If these changes open or close a session, the session writer finishes them:
        the latches follow the changes into its mailbox, and it releases them after the
        batch's write (:class:`~actors.listeners.ListenerHost`). A host that crashes
        or stops before this point never releases them: the batch is not acknowledged,
        and the broker delivers it again on the session's next connection."""
        latches, self._latches = self._latches, []
        if not latches:
            return
        writer = self._session_writer
        if writer is not None and any(map(_opens_or_closes_a_session, changed)):
            try:
                while latches:
                    _deliver(writer, latches[0])
                    latches.pop(0)
            except pykka.ActorDeadError:
                log.warning("the session writer is gone; acknowledging without its write")
        for latch in latches:
            latch.release()


def _fail_commands_in(message: Any, evse_id: EvseId) -> None:
    """Commands queued for an EVSE actor that is gone: their callers learn at once."""
    items = message.items if isinstance(message, EvseBatch) else (message,)
    for item in items:
        if isinstance(item, SendCommand):
            error = ActorUnavailableError(f"EVSE {evse_id} is restarting; try again")
            item.reply.set_exception((ActorUnavailableError, error, None))


Sink = pykka.ActorRef[Any] | BatchInbox
"""Where an EVSE actor sends its events: an actor, or a batch inbox in front of one."""


def _deliver(sink: Sink, item: Any) -> None:
    """``tell`` ``item``, or queue it in the shared inbox (raises ``ActorDeadError``)."""
    if isinstance(sink, BatchInbox):
        sink.put(item)
    else:
        sink.tell(item)


def _tell_timeout(actor: pykka.ActorRef[Any], cid: CorrelationId) -> None:
    """Runs on the timer thread: only a ``tell`` into the EVSE actor."""
    with contextlib.suppress(pykka.ActorDeadError):
        actor.tell(CommandTimedOut(correlation_id=cid))


def _notable(changed: EvseChanged) -> bool:
    """Anything but a plain meter update: a status or maintenance change, a session opening
    or closing."""
    for effect in changed.effects:
        if isinstance(effect, StateChanged):
            before, after = effect.before, effect.after
            if (
                before.status != after.status
                or before.session_id != after.session_id
                or before.maintenance != after.maintenance
                or before.maintenance_pending != after.maintenance_pending
            ):
                return True
        elif not isinstance(effect, Ignored):
            return True
    return False


def _opens_or_closes_a_session(changed: EvseChanged) -> bool:
    """A session-critical change: the session row is opened or closed (or the EVSE takes
    up or leaves a session), so it is applied only once the session writer has written."""
    for effect in changed.effects:
        if isinstance(effect, SessionOpened | SessionClosed):
            return True
        if isinstance(effect, StateChanged) and effect.before.session_id != effect.after.session_id:
            return True
    return False


def _wall_ms() -> int:
    return int(time.time() * 1000)
