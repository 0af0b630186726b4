"""One Pykka actor per EVSE: the EVSE's own middleware.

:class:`Evse` is the plain logic (state machine + pending commands, no threads).
:class:`EvseActor` is the EVSE's actor (a :class:`pykka.ThreadingActor`): it owns its
``Evse``, takes the station's messages for this EVSE in order (the supervisor hands it one
:class:`EvseBatch` per drained burst), sends its commands, and routes what changed to the
dashboard subscriber actors and the supervisor. It fails alone: an exception while it
handles a ``tell`` stops this actor only (its pending and queued commands fail at once), the
supervisor is told with :class:`~actors.messages.EvseCrashed` and starts a new actor from
the last state; an exception in an ``ask`` goes back to the caller, as always in Pykka.
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
from actors.inbox import BatchInbox
from actors.messages import (
    CommandOutcome,
    CommandTimedOut,
    EvseChanged,
    EvseChangedBatch,
    EvseCrashed,
    GetState,
    OperatorAlert,
    Publish,
    SendCommand,
)
from actors.timers import TimerHandle, Timers
from protocol import (
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

__all__ = [
    "Evse",
    "EvseActor",
    "EvseBatch",
    "RetireEvse",
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


# ---------------------------------------------------------------------- messages


@dataclass(frozen=True, slots=True)
class EvseBatch:
    """Supervisor -> EVSE actor, handled in order: this EVSE's station messages of one burst,
    commands the supervisor sends (``info`` to reconcile) and the :class:`AppliedLatch` of a
    raw MQTT batch after its last message for this EVSE (:mod:`actors.acks`)."""

    items: Sequence[Any]


@dataclass(frozen=True, slots=True)
class RetireEvse:
    """Supervisor -> EVSE actor: the station no longer announces this EVSE; the actor ends."""


class EvseActor(pykka.ThreadingActor):
    """One EVSE's actor: its state machine, its commands and the routing of its events."""

    def __init__(
        self,
        state: EvseState,
        *,
        bridge: pykka.ActorRef[Any] | None,
        supervisor: Sink | None,
        subscribers: Sequence[Sink] = (),
        timers: Timers | None = None,
        correlation_ids: Callable[[], CorrelationId] = new_correlation_id,
        clock_ms: Callable[[], int] | None = None,
        observe_command: Callable[[CommandName, float | None], None] | None = None,
        view: FleetView | None = None,
        session_writer: Sink | None = None,
    ) -> None:
        """``supervisor``, ``subscribers`` and ``session_writer`` are actor refs or, shared
        by every EVSE actor, a :class:`~actors.inbox.BatchInbox` in front of each (what the
        supervisor passes: a subscriber then wakes once per burst, not once per EVSE);
        ``observe_command(command, seconds)`` gets each command's round trip (``None``: it
        timed out), on this actor's thread (the metrics); ``session_writer``: see
        :meth:`_release_latches`."""
        super().__init__()
        self.evse = Evse(state=state)
        self.evse_id = state.evse_id
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

    def __repr__(self) -> str:
        return f"EvseActor({self.evse_id}, {self.actor_urn})"

    # ------------------------------------------------------------------ Pykka side

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
            case SendCommand() as command:
                self._send(command)
            case CommandTimedOut(correlation_id=cid):
                self._time_out(cid)
            case GetState():
                return self.evse.state
            case RetireEvse():
                self.evse.fail_all(UnknownEvseError(f"EVSE {self.evse_id} was retired"))
                self.stop()
            case _:
                self._on_inbound(message)
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
        self.evse.fail_all(error)
        kept = []
        while not self.actor_inbox.empty():  # this thread is the only reader: get() won't block
            envelope = self.actor_inbox.get()
            _fail_commands_in(envelope.message, self.evse_id)
            kept.append(envelope)
        for envelope in kept:  # Pykka's teardown answers the asks among them
            self.actor_inbox.put(envelope)

    # ------------------------------------------------------------------ station messages

    def _on_inbound(self, inbound: Any) -> None:
        event: EvseEvent
        match inbound:
            case CommandReply(id=cid) if cid not in self.evse.pending:
                # No command of ours (forged, or late after its time-out): its info stands
                # outside the (epoch, seq) order, so it must not open a session or move a status.
                self.evse.ignored += 1
                log.warning("Evse %s: reply %s matches no pending command", self.evse_id, cid)
                return
            case StatusReport() | MeterValues() | CommandReply():
                event = inbound
            case StationBirth(ts=ts, epoch=epoch, station=station):
                local = self.evse.state.local_id
                descriptor = next((e for e in station.evses if e.id == local), None)
                event = StationCameOnline(ts=ts, epoch=epoch, descriptor=descriptor)
            case StationOffline(ts=ts, reason=reason):
                event = StationWentOffline(ts=ts, reason=reason)
            case _:
                log.warning("Evse %s: unexpected inbound %r", self.evse_id, inbound)
                return
        evse = self.evse
        changed = evse.apply(event)
        if changed is not None:
            if self._view is not None:  # the read model first: whoever hears of it can read it
                self._view.put_evse(changed.state)
            self._changed.append(changed)
            for effect in changed.effects:
                if isinstance(effect, MeterReset):
                    self._meter_reset(effect)
                elif isinstance(effect, Inconsistent):
                    self._inconsistent(effect)
        if isinstance(inbound, CommandReply):
            waiting = evse.pending.get(inbound.id)
            if waiting is not None and self._observe_command is not None:  # before the caller runs
                self._observe_command(waiting.command, time.monotonic() - waiting.sent_at)
            evse.complete(inbound)
        late = evse.running_abandoned()
        if late is not None:
            self._stop_late_session(late)

    def _meter_reset(self, reset: MeterReset) -> None:
        state = self.evse.state
        message = (
            f"EVSE {state.evse_id}: energy register went back from {reset.before_wh:.0f} Wh "
            f"to {reset.after_wh:.0f} Wh (meter reset); the session's energy carries on"
        )
        self._alert_about(state, "meter_reset", message)

    def _inconsistent(self, effect: Inconsistent) -> None:
        state = self.evse.state
        message = f"EVSE {state.evse_id}: {effect.why} (applied: the station is the authority)"
        self._alert_about(state, "inconsistent_report", message)

    def _stop_late_session(self, session_id: SessionId) -> None:
        """The station started a session after the CSMS stopped waiting for that start: the
        driver was told it failed, so it is stopped, and recorded with no driver."""
        state = self.evse.state
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
        self._send(stop)
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
                _deliver(subscriber, alert)

    def _fan_out(self) -> None:
        """One batch per subscriber; the supervisor hears only of status/session changes
        (every change when there is no read model to write: then it keeps the view)."""
        if not self._changed:
            return
        changed, self._changed = tuple(self._changed), []
        if self._supervisor is not None:
            notable = changed if self._view is None else tuple(filter(_notable, changed))
            if notable:
                with contextlib.suppress(pykka.ActorDeadError):
                    _deliver(self._supervisor, EvseChangedBatch(events=notable))
        batch = EvseChangedBatch(events=changed)
        for subscriber in list(self._subscribers):
            try:
                _deliver(subscriber, batch)
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
                    _deliver(writer, latches[0])
                    latches.pop(0)
            except pykka.ActorDeadError:
                log.warning("the session writer is gone; acknowledging without its write")
        for latch in latches:
            latch.release()

    # ------------------------------------------------------------------ commands

    def _send(self, command: SendCommand) -> None:
        state = self.evse.state
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
            me = self.actor_ref
            timer = self._timers.call_later(command.timeout_s, lambda: _tell_timeout(me, cid))
        self.evse.pending[cid] = _Pending(
            command=command.command,
            reply=command.reply,
            timer=timer,
            sent_at=time.monotonic(),
            args=command.args,
        )
        if self._bridge is None:
            self._time_out(cid)
            return
        log.info("Evse %s: sending %s (%s)", state.evse_id, command.command, cid)
        self._bridge.tell(Publish(topic=topic, payload=payload, retain=retain))

    def _time_out(self, cid: CorrelationId) -> None:
        evse = self.evse
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
