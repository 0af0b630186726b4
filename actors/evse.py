"""One actor per EVSE, the EVSE's own middleware; many of them hosted on one thread.

:class:`Evse` is the plain logic (state machine + pending commands, no threads).
:class:`EvseActor` is one EVSE's actor: its ``Evse``, its own message order, its own
failure, and a handle, :class:`EvseRef`, used like a Pykka ``ActorRef`` (``tell``,
``ask``, ``is_alive``, ``actor_urn``). :class:`EvseHost` is the Pykka actor (one
thread) that runs the EVSE actors of one shard of the fleet, the way Akka or
Orleans run many actors on a few threads.

Why not a Pykka thread per EVSE: a Pykka actor *is* a thread, and a station message
then wakes one sleeping thread per hop. Measured on 2 cores (``docs/performance.md``),
that capped ingest near 1,500 msg/s at 0.58 ms of CPU per message, most of it threads
waking each other. A host takes its messages in batches: the supervisor hands it one
:class:`ShardBatch` per drained burst, and it fans the resulting changes out as one
:class:`~actors.messages.EvseChangedBatch` per subscriber.

What an EVSE actor keeps from being an actor of its own:

- **its messages in order**: one station's messages all go to one host (stations are
  sharded by ``crc32(station_id)``), which runs them in arrival order;
- **its own failure**: an exception while an EVSE actor handles a ``tell`` kills that
  EVSE actor only (its pending commands fail, its handle goes dead, the supervisor is
  told with :class:`~actors.messages.EvseCrashed` and restarts it from its last state);
  an exception in an ``ask`` goes back to the caller, as in Pykka;
- **its own identity**: every incarnation has its own handle and ``actor_urn``; a
  message for a dead incarnation is dropped (an ``ask`` or a command fails at once).
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pykka

from actors.acks import AppliedLatch
from actors.errors import ActorUnavailableError, CommandTimeoutError, UnknownEvseError
from actors.evse_state import (
    SESSION_STATUSES,
    EvseEvent,
    EvseState,
    Ignored,
    Inconsistent,
    MeterReset,
    SessionClosed,
    SessionOpened,
    StateChanged,
    StationCameOnline,
    StationWentOffline,
    transition,
)
from actors.fleet_view import FleetView
from actors.messages import (
    CommandOutcome,
    CommandTimedOut,
    EvseChanged,
    EvseChangedBatch,
    EvseCrashed,
    GetState,
    HostCrashed,
    OperatorAlert,
    Publish,
    SendCommand,
)
from actors.protocol import (
    CommandName,
    CommandReply,
    CommandRequest,
    CorrelationId,
    EvseId,
    EvseStatus,
    MeterValues,
    RejectReason,
    SessionId,
    StartArgs,
    StationBirth,
    StationOffline,
    StatusReport,
    StopArgs,
    args_dict,
    encode,
)
from actors.timers import TimerHandle, Timers

__all__ = [
    "Evse",
    "EvseActor",
    "EvseHost",
    "EvseRef",
    "HostEvse",
    "RetireEvse",
    "ShardBatch",
    "ToEvse",
    "new_correlation_id",
]

log = logging.getLogger(__name__)


def new_correlation_id() -> CorrelationId:
    return CorrelationId(uuid.uuid4().hex)


@dataclass
class _Pending:
    command: CommandName
    reply: pykka.Future[Any]
    timer: TimerHandle | None
    sent_at: float = 0.0
    args: Any = None
    """The command's typed arguments (a timed-out start's session is remembered)."""
    """``time.monotonic()`` when the request went to the bridge (the round trip's start)."""


@dataclass
class Evse:
    """The logic of one EVSE, free of threads: feed it events, read what to do."""

    state: EvseState
    pending: dict[CorrelationId, _Pending] = field(default_factory=dict)
    ignored: int = 0
    abandoned: dict[SessionId, None] = field(default_factory=dict)
    """Sessions whose ``start`` timed out: the driver was told it did not start, so if the
    station reports one of them running after all, the CSMS stops it (oldest dropped
    first past :data:`_MAX_ABANDONED`)."""

    def apply(self, event: EvseEvent) -> EvseChanged | None:
        """Run the pure transition; return the event to fan out, if anything changed."""
        self.state, effects = transition(self.state, event)
        changed = False
        for effect in effects:
            if isinstance(effect, Ignored):
                self.ignored += 1
                log.warning("Evse %s ignored a report: %s", self.state.evse_id, effect.why)
            else:
                changed = True
        return EvseChanged(state=self.state, effects=effects) if changed else None

    def complete(self, reply: CommandReply) -> None:
        """Resolve the caller's future for a reply (unknown or late replies are dropped)."""
        pending = self.pending.pop(reply.id, None)
        if pending is None:
            log.info(
                "Evse %s: reply %s matches no pending command (late?)", self.state.evse_id, reply.id
            )
            return
        if pending.timer is not None:
            pending.timer.cancel()
        pending.reply.set(
            CommandOutcome(
                command=reply.command,
                accepted=reply.accepted,
                reason=reply.reason,
                info=reply.info,
                state=self.state,
            )
        )

    def abandon(self, session_id: SessionId) -> None:
        self.abandoned[session_id] = None
        while len(self.abandoned) > _MAX_ABANDONED:
            del self.abandoned[next(iter(self.abandoned))]

    def running_abandoned(self) -> SessionId | None:
        """A session the station runs although its start was given up on (then forgotten)."""
        state = self.state
        sid = state.session_id
        running = state.status in SESSION_STATUSES or state.status is EvseStatus.PREPARING
        if sid is None or not running or sid not in self.abandoned:
            return None
        del self.abandoned[sid]
        return sid

    def fail_all(self, error: Exception) -> None:
        for pending in self.pending.values():
            if pending.timer is not None:
                pending.timer.cancel()
            pending.reply.set_exception((type(error), error, None))
        self.pending.clear()


_MAX_ABANDONED = 64


# ---------------------------------------------------------------------- messages to a host


@dataclass(frozen=True, slots=True)
class HostEvse:
    """Supervisor -> host: start the EVSE actor behind ``ref`` from ``state`` (a restart
    is a new ``ref``; the old incarnation, if any, is gone)."""

    ref: EvseRef
    state: EvseState


@dataclass(frozen=True, slots=True)
class ToEvse:
    """A message for one EVSE actor incarnation; ``reply`` set: it is an ``ask``."""

    ref: EvseRef
    message: Any
    reply: pykka.Future[Any] | None = None


@dataclass(frozen=True, slots=True)
class RetireEvse:
    """Supervisor -> host: the station no longer announces this EVSE; its actor ends."""

    ref: EvseRef


@dataclass(frozen=True, slots=True)
class ShardBatch:
    """Supervisor -> host, handled in order: ``(evse_id, inbound)`` station messages,
    :class:`HostEvse` and :class:`ToEvse` items, and the :class:`AppliedLatch` of a raw
    MQTT batch after its last message for this host (:mod:`actors.acks`)."""

    items: Sequence[tuple[EvseId, Any] | HostEvse | ToEvse | RetireEvse | AppliedLatch]


class EvseRef:
    """The handle of one EVSE actor incarnation, used like a Pykka ``ActorRef``."""

    __slots__ = ("_alive", "_host", "actor_urn", "evse_id")

    def __init__(self, evse_id: EvseId, host: pykka.ActorRef[Any]) -> None:
        self.evse_id = evse_id
        self.actor_urn = f"urn:smartcharge:evse:{evse_id}:{uuid.uuid4().hex[:12]}"
        self._host = host
        self._alive = True  # cleared by the host's thread, once, when this incarnation ends

    def __repr__(self) -> str:
        return f"<EvseRef {self.actor_urn}{'' if self.is_alive() else ' (dead)'}>"

    def is_alive(self) -> bool:
        return self._alive and self._host.is_alive()

    def tell(self, message: Any) -> None:
        """Queue ``message`` for this EVSE actor; raises ``ActorDeadError`` if it is gone."""
        if not self._alive:
            raise pykka.ActorDeadError(f"{self.actor_urn} is dead")
        self._host.tell(ToEvse(self, message))

    def ask(self, message: Any, *, block: bool = True, timeout: float | None = None) -> Any:
        """Send ``message`` and (``block``) wait for the answer, as ``ActorRef.ask``."""
        future: pykka.Future[Any] = pykka.ThreadingFuture()
        if not self._alive:
            future.set_exception((pykka.ActorDeadError, pykka.ActorDeadError(self.actor_urn), None))
        else:
            try:
                self._host.tell(ToEvse(self, message, future))
            except pykka.ActorDeadError as exc:
                future.set_exception((pykka.ActorDeadError, exc, None))
        return future.get(timeout=timeout) if block else future

    def _died(self) -> None:
        self._alive = False


class EvseActor:
    """One EVSE's actor: its state machine, its commands and the routing of its events.

    Runs only on its :class:`EvseHost`'s thread; the host performs the fan-out.
    """

    __slots__ = ("evse", "ref")

    def __init__(self, ref: EvseRef, state: EvseState) -> None:
        self.ref = ref
        self.evse = Evse(state=state)


class EvseHost(pykka.ThreadingActor):
    """Runs the EVSE actors of one shard of the fleet on one thread (see the module doc)."""

    def __init__(
        self,
        *,
        bridge: pykka.ActorRef[Any] | None,
        supervisor: pykka.ActorRef[Any] | None,
        subscribers: Sequence[pykka.ActorRef[Any]] = (),
        timers: Timers | None = None,
        correlation_ids: Callable[[], CorrelationId] = new_correlation_id,
        clock_ms: Callable[[], int] | None = None,
        observe_command: Callable[[CommandName, float | None], None] | None = None,
        view: FleetView | None = None,
        index: int = 0,
        session_writer: pykka.ActorRef[Any] | None = None,
    ) -> None:
        """``observe_command(command, seconds)`` gets each command's round trip (``None``: it
        timed out), on this host's thread (the metrics); ``session_writer``: see
        :meth:`_release_latches`."""
        super().__init__()
        self.index = index
        self._actors: dict[EvseId, EvseActor] = {}
        self._changed: list[EvseChanged] = []
        self._observe_command = observe_command
        self._view = view
        self._bridge = bridge
        self._supervisor = supervisor
        self._subscribers = list(subscribers)
        self._timers = timers
        self._correlation_ids = correlation_ids
        self._clock_ms = clock_ms or _wall_ms
        self._session_writer = session_writer
        self._latches: list[AppliedLatch] = []

    # ------------------------------------------------------------------ Pykka side

    def on_receive(self, message: Any) -> Any:
        """Runs on this host's thread, one message at a time."""
        match message:
            case ShardBatch(items=items):
                for item in items:
                    if isinstance(item, tuple):
                        self._inbound(*item)
                    elif isinstance(item, ToEvse):
                        self._to_evse(item)
                    elif isinstance(item, RetireEvse):
                        self._retire(item)
                    elif isinstance(item, AppliedLatch):
                        self._latches.append(item)
                    else:
                        self._host(item)
            case ToEvse() as envelope:
                self._to_evse(envelope)
            case HostEvse() as hosted:
                self._host(hosted)
            case _:
                log.warning("EvseHost %d: unexpected message %r", self.index, message)
        changed = self._changed
        self._fan_out()
        self._release_latches(changed)
        return None

    def on_failure(self, exception_type: Any, exception_value: Any, traceback: Any) -> None:
        """A bug in the host itself (not in an EVSE actor): every EVSE actor here ends; the
        supervisor restarts them elsewhere from their last states."""
        states = tuple(actor.evse.state for actor in self._actors.values())
        self._end_all(ActorUnavailableError("the EVSE host crashed; restarting"))
        if self._supervisor is not None:
            self._supervisor.tell(
                HostCrashed(
                    index=self.index,
                    last_states=states,
                    error=f"{exception_type.__name__}: {exception_value}",
                    actor_urn=self.actor_urn,
                )
            )

    def on_stop(self) -> None:
        self._end_all(ActorUnavailableError("the CSMS is stopping"))

    def _end_all(self, error: Exception) -> None:
        for actor in self._actors.values():
            actor.ref._died()
            actor.evse.fail_all(error)
        self._actors.clear()
        self._fail_queued()

    def _fail_queued(self) -> None:
        """Answer what is still queued behind the stop: Pykka fails the futures of real
        asks, not those an :class:`EvseRef` carries inside its tells."""
        inbox: Any = self.actor_inbox
        with inbox.mutex:
            queued = [envelope.message for envelope in inbox.queue]
        for message in queued:
            if isinstance(message, ShardBatch):
                for item in message.items:
                    if isinstance(item, ToEvse):
                        _fail_dead(item)
            elif isinstance(message, ToEvse):
                _fail_dead(message)

    # ------------------------------------------------------------------ hosting

    def _host(self, hosted: HostEvse) -> None:
        old = self._actors.get(hosted.ref.evse_id)
        if old is not None:
            if old.ref is not hosted.ref:
                old.ref._died()
            old.evse.fail_all(ActorUnavailableError(f"EVSE {old.ref.evse_id} restarted"))
        self._actors[hosted.ref.evse_id] = EvseActor(hosted.ref, hosted.state)

    def _retire(self, retired: RetireEvse) -> None:
        actor = self._actors.get(retired.ref.evse_id)
        if actor is None or actor.ref is not retired.ref:
            return
        del self._actors[retired.ref.evse_id]
        actor.ref._died()
        actor.evse.fail_all(UnknownEvseError(f"EVSE {retired.ref.evse_id} was retired"))

    def _crash(self, actor: EvseActor, exc: Exception) -> None:
        """An EVSE actor failed on a ``tell``: it ends here, and the supervisor decides."""
        evse_id = actor.ref.evse_id
        log.error("EVSE actor %s failed", evse_id, exc_info=exc)
        if self._actors.get(evse_id) is actor:
            del self._actors[evse_id]
        actor.ref._died()
        actor.evse.fail_all(ActorUnavailableError(f"EVSE {evse_id} restarting"))
        if self._supervisor is not None:
            self._supervisor.tell(
                EvseCrashed(
                    evse_id=evse_id,
                    last_state=actor.evse.state,
                    error=f"{type(exc).__name__}: {exc}",
                    actor_urn=actor.ref.actor_urn,
                )
            )

    # ------------------------------------------------------------------ one EVSE actor

    def _inbound(self, evse_id: EvseId, inbound: Any) -> None:
        actor = self._actors.get(evse_id)
        if actor is None:
            log.debug("EvseHost %d: no live EVSE actor %s; dropped", self.index, evse_id)
            return
        try:
            self._on_inbound(actor, inbound)
        except Exception as exc:
            self._crash(actor, exc)

    def _to_evse(self, envelope: ToEvse) -> None:
        ref, message, reply = envelope.ref, envelope.message, envelope.reply
        actor = self._actors.get(ref.evse_id)
        if actor is None or actor.ref is not ref:
            _fail_dead(envelope)
            return
        try:
            result = self._receive(actor, message)
        except Exception as exc:
            if reply is None:
                self._crash(actor, exc)
            else:  # as Pykka: an ask's exception goes back to the caller, the actor lives
                reply.set_exception((type(exc), exc, exc.__traceback__))
            return
        if reply is not None:
            reply.set(result)

    def _receive(self, actor: EvseActor, message: Any) -> Any:
        match message:
            case SendCommand() as command:
                self._send(actor, command)
            case CommandTimedOut(correlation_id=cid):
                self._time_out(actor, cid)
            case GetState():
                return actor.evse.state
            case _:
                log.warning("Evse %s: unexpected message %r", actor.ref.evse_id, message)
        return None

    def _on_inbound(self, actor: EvseActor, inbound: Any) -> None:
        event: EvseEvent
        match inbound:
            case CommandReply(id=cid) if cid not in actor.evse.pending:
                # No command of ours (forged, or late after its time-out): its info stands
                # outside the (epoch, seq) order, so it must not open a session or move a status.
                actor.evse.ignored += 1
                log.warning("Evse %s: reply %s matches no pending command", actor.ref.evse_id, cid)
                return
            case StatusReport() | MeterValues() | CommandReply():
                event = inbound
            case StationBirth(ts=ts, epoch=epoch, station=station):
                local = actor.evse.state.local_id
                descriptor = next((e for e in station.evses if e.id == local), None)
                event = StationCameOnline(ts=ts, epoch=epoch, descriptor=descriptor)
            case StationOffline(ts=ts, reason=reason):
                event = StationWentOffline(ts=ts, reason=reason)
            case _:
                log.warning("Evse %s: unexpected inbound %r", actor.ref.evse_id, inbound)
                return
        evse = actor.evse
        changed = evse.apply(event)
        if changed is not None:
            if self._view is not None:  # the read model first: whoever hears of it can read it
                self._view.put_evse(changed.state)
            self._changed.append(changed)
            for effect in changed.effects:
                if isinstance(effect, MeterReset):
                    self._meter_reset(actor, effect)
                elif isinstance(effect, Inconsistent):
                    self._inconsistent(actor, effect)
        if isinstance(inbound, CommandReply):
            waiting = evse.pending.get(inbound.id)
            if waiting is not None and self._observe_command is not None:  # before the caller runs
                self._observe_command(waiting.command, time.monotonic() - waiting.sent_at)
            evse.complete(inbound)
        late = evse.running_abandoned()
        if late is not None:
            self._stop_late_session(actor, late)

    def _meter_reset(self, actor: EvseActor, reset: MeterReset) -> None:
        state = actor.evse.state
        message = (
            f"EVSE {state.evse_id}: energy register went back from {reset.before_wh:.0f} Wh "
            f"to {reset.after_wh:.0f} Wh (meter reset); the session's energy carries on"
        )
        self._alert_about(state, "meter_reset", message)

    def _inconsistent(self, actor: EvseActor, effect: Inconsistent) -> None:
        state = actor.evse.state
        message = f"EVSE {state.evse_id}: {effect.why} (applied: the station is the authority)"
        self._alert_about(state, "inconsistent_report", message)

    def _stop_late_session(self, actor: EvseActor, session_id: SessionId) -> None:
        """The station started a session after the CSMS stopped waiting for that start: the
        driver was told it failed, so it is stopped, and recorded with no driver."""
        state = actor.evse.state
        message = (
            f"EVSE {state.evse_id} started session {session_id} after its start timed out; "
            "stopping it (nobody is charged)"
        )
        stop = SendCommand(
            command=CommandName.STOP,
            args=StopArgs(session_id=session_id),
            reply=pykka.ThreadingFuture(),
            timeout_s=10.0,
        )
        self._send(actor, stop)
        self._alert_about(state, "late_session_stopped", message)

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
        for subscriber in list(self._subscribers):
            with contextlib.suppress(pykka.ActorDeadError):
                subscriber.tell(alert)

    def _fan_out(self) -> None:
        """One batch per subscriber; the supervisor hears only of status/session changes
        (every change when there is no read model to write: then it keeps the view)."""
        if not self._changed:
            return
        changed, self._changed = tuple(self._changed), []
        if self._supervisor is not None:
            notable = changed if self._view is None else tuple(filter(_notable, changed))
            if notable:
                self._supervisor.tell(EvseChangedBatch(events=notable))
        batch = EvseChangedBatch(events=changed)
        for subscriber in list(self._subscribers):
            try:
                subscriber.tell(batch)
            except pykka.ActorDeadError:
                log.info("dropping dead subscriber %s", subscriber)
                self._subscribers.remove(subscriber)

    # ------------------------------------------------------------------ acks (actors.acks)

    def _release_latches(self, changed: Sequence[EvseChanged]) -> None:
        """The batches whose latches arrived are applied here (state changed, changes fanned
        out). If these changes open or close a session, the session writer finishes them:
        the latches follow the changes into its mailbox, and it releases them after the
        batch's write (:class:`~actors.dashboard.DashboardSubscriber`). A host that crashes
        or stops before this point never releases them: the batch is not acknowledged,
        and the broker delivers it again on the session's next connection."""
        latches, self._latches = self._latches, []
        if not latches:
            return
        writer = self._session_writer
        if writer is not None and any(map(_opens_or_closes_a_session, changed)):
            try:
                while latches:
                    writer.tell(latches[0])
                    latches.pop(0)
            except pykka.ActorDeadError:
                log.warning("the session writer is gone; acknowledging without its write")
        for latch in latches:
            latch.release()

    # ------------------------------------------------------------------ commands

    def _send(self, actor: EvseActor, command: SendCommand) -> None:
        state = actor.evse.state
        if not state.reachable:
            # Never queued in the station's session to run when it reconnects: refused now.
            command.reply.set(
                CommandOutcome(
                    command=command.command,
                    accepted=False,
                    reason=RejectReason.OFFLINE,
                    info=None,
                    state=state,
                )
            )
            return
        cid = self._correlation_ids()
        now = self._clock_ms()
        request = CommandRequest(
            station_id=state.station_id,
            id=cid,
            command=command.command,
            evse_id=state.local_id,
            expires_at=now + int(command.timeout_s * 1000),
            args=args_dict(command.args),
            ts=now,
        )
        topic, payload, retain = encode(request)
        timer = None
        if self._timers is not None:
            ref, host = actor.ref, self.actor_ref
            timer = self._timers.call_later(
                command.timeout_s, lambda: _tell_timeout(host, ref, cid)
            )
        actor.evse.pending[cid] = _Pending(
            command=command.command,
            reply=command.reply,
            timer=timer,
            sent_at=time.monotonic(),
            args=command.args,
        )
        if self._bridge is None:
            self._time_out(actor, cid)
            return
        log.info("Evse %s: sending %s (%s)", state.evse_id, command.command, cid)
        self._bridge.tell(Publish(topic=topic, payload=payload, retain=retain))

    def _time_out(self, actor: EvseActor, cid: CorrelationId) -> None:
        evse = actor.evse
        pending = evse.pending.pop(cid, None)
        if pending is None:
            return
        if pending.timer is not None:
            pending.timer.cancel()
        error = CommandTimeoutError(
            f"station {evse.state.station_id} did not answer {pending.command} "
            f"for EVSE {evse.state.evse_id} in time"
        )
        if self._observe_command is not None:
            self._observe_command(pending.command, None)
        if isinstance(pending.args, StartArgs):
            evse.abandon(pending.args.session_id)
        pending.reply.set_exception((CommandTimeoutError, error, None))


def _fail_dead(envelope: ToEvse) -> None:
    """A message for an EVSE actor incarnation that is gone: its caller learns at once."""
    ref, message = envelope.ref, envelope.message
    if envelope.reply is not None:
        dead = pykka.ActorDeadError(f"{ref.actor_urn} is dead")
        envelope.reply.set_exception((pykka.ActorDeadError, dead, None))
    if isinstance(message, SendCommand):
        error = ActorUnavailableError(f"EVSE {ref.evse_id} is restarting; try again")
        message.reply.set_exception((ActorUnavailableError, error, None))


def _tell_timeout(host: pykka.ActorRef[Any], ref: EvseRef, cid: CorrelationId) -> None:
    """Runs on the timer thread: only a ``tell`` into the host."""
    with contextlib.suppress(pykka.ActorDeadError):
        host.tell(ToEvse(ref, CommandTimedOut(correlation_id=cid)))


def _notable(changed: EvseChanged) -> bool:
    """Anything but a plain meter update: a status change or a session opening/closing."""
    for effect in changed.effects:
        if isinstance(effect, StateChanged):
            before, after = effect.before, effect.after
            if before.status != after.status or before.session_id != after.session_id:
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
