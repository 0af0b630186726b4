"""One actor per EVSE: the EVSE's own middleware.

:class:`Evse` is the plain logic (state machine + pending commands, no threads);
:class:`EvseActor` is the thin Pykka shell that owns one ``Evse``, performs its
effects (publish through the bridge, fan out events) and reports its own crash to
the supervisor. Everything in ``EvseActor`` runs on that actor's own thread.
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

from actors.errors import ActorUnavailableError, CommandTimeoutError
from actors.evse_state import (
    EvseEvent,
    EvseState,
    Ignored,
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
    EvseCrashed,
    GetState,
    Inbound,
    Publish,
    SendCommand,
)
from actors.protocol import (
    CommandName,
    CommandReply,
    CommandRequest,
    CorrelationId,
    MeterValues,
    StationBirth,
    StationOffline,
    StatusReport,
    args_dict,
    encode,
)
from actors.timers import TimerHandle, Timers

__all__ = ["Evse", "EvseActor", "new_correlation_id"]

log = logging.getLogger(__name__)


def new_correlation_id() -> CorrelationId:
    return CorrelationId(uuid.uuid4().hex)


@dataclass
class _Pending:
    command: CommandName
    reply: pykka.Future[Any]
    timer: TimerHandle | None
    sent_at: float = 0.0
    """``time.monotonic()`` when the request went to the bridge (the round trip's start)."""


@dataclass
class Evse:
    """The logic of one EVSE, free of threads: feed it events, read what to do."""

    state: EvseState
    pending: dict[CorrelationId, _Pending] = field(default_factory=dict)
    ignored: int = 0

    def apply(self, event: EvseEvent) -> EvseChanged | None:
        """Run the pure transition; return the event to fan out, if anything changed."""
        self.state, effects = transition(self.state, event)
        for effect in effects:
            if isinstance(effect, Ignored):
                self.ignored += 1
                log.warning("Evse %s ignored a report: %s", self.state.evse_id, effect.why)
        if any(not isinstance(e, Ignored) for e in effects):
            return EvseChanged(state=self.state, effects=effects)
        return None

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

    def fail_all(self, error: Exception) -> None:
        for pending in self.pending.values():
            if pending.timer is not None:
                pending.timer.cancel()
            pending.reply.set_exception((type(error), error, None))
        self.pending.clear()


class EvseActor(pykka.ThreadingActor):
    """Owns one EVSE: its state machine, its commands and the routing of its events."""

    # Thousands of these: daemon threads start 3x faster (Python scans every non-daemon
    # thread on each start); the supervisor and CsmsSystem.stop stop them explicitly.
    use_daemon_thread = True

    def __init__(
        self,
        state: EvseState,
        *,
        bridge: pykka.ActorRef[Any] | None,
        supervisor: pykka.ActorRef[Any] | None,
        subscribers: Sequence[pykka.ActorRef[Any]] = (),
        timers: Timers | None = None,
        correlation_ids: Callable[[], CorrelationId] = new_correlation_id,
        clock_ms: Callable[[], int] | None = None,
        observe_command: Callable[[CommandName, float | None], None] | None = None,
        view: FleetView | None = None,
    ) -> None:
        """``observe_command(command, seconds)`` gets each command's round trip (``None``: it
        timed out), on this actor's thread (the metrics)."""
        super().__init__()
        self.evse = Evse(state=state)
        self._observe_command = observe_command
        self._view = view
        self._bridge = bridge
        self._supervisor = supervisor
        self._subscribers = list(subscribers)
        self._timers = timers
        self._correlation_ids = correlation_ids
        self._clock_ms = clock_ms or _wall_ms

    def on_receive(self, message: Any) -> Any:
        """Runs on this actor's thread, one message at a time."""
        match message:
            case Inbound(message=inbound):
                self._on_inbound(inbound)
            case SendCommand() as command:
                self._send(command)
            case CommandTimedOut(correlation_id=cid):
                self._time_out(cid)
            case GetState():
                return self.evse.state
            case _:
                log.warning("Evse %s: unexpected message %r", self.evse.state.evse_id, message)
        return None

    def on_failure(self, exception_type: Any, exception_value: Any, traceback: Any) -> None:
        """Runs on this actor's thread after a ``tell`` raised: tell the supervisor, then die."""
        self.evse.fail_all(ActorUnavailableError(f"EVSE {self.evse.state.evse_id} restarting"))
        if self._supervisor is not None:
            self._supervisor.tell(
                EvseCrashed(
                    evse_id=self.evse.state.evse_id,
                    last_state=self.evse.state,
                    error=f"{exception_type.__name__}: {exception_value}",
                    actor_urn=self.actor_urn,
                )
            )

    def on_stop(self) -> None:
        self.evse.fail_all(ActorUnavailableError(f"EVSE {self.evse.state.evse_id} stopped"))

    # ------------------------------------------------------------------ inbound

    def _on_inbound(self, inbound: Any) -> None:
        event: EvseEvent
        match inbound:
            case StatusReport() | MeterValues():
                event = inbound
            case CommandReply() as reply:
                event = reply
            case StationBirth(ts=ts):
                event = StationCameOnline(ts=ts)
            case StationOffline(ts=ts, reason=reason):
                event = StationWentOffline(ts=ts, reason=reason)
            case _:
                log.warning("Evse %s: unexpected inbound %r", self.evse.state.evse_id, inbound)
                return
        changed = self.evse.apply(event)
        if isinstance(inbound, CommandReply):
            waiting = self.evse.pending.get(inbound.id)
            if waiting is not None and self._observe_command is not None:  # before the caller runs
                self._observe_command(waiting.command, time.monotonic() - waiting.sent_at)
            self.evse.complete(inbound)
        if changed is not None:
            self._fan_out(changed)

    def _fan_out(self, changed: EvseChanged) -> None:
        """The read model first (so whoever hears of the change can read it), then the
        supervisor (only when the status or the session changed, unless there is no view to
        write: a meter sample costs it nothing), then every subscriber."""
        if self._view is not None:
            self._view.put_evse(changed.state)
        if self._supervisor is not None and (self._view is None or _notable(changed)):
            self._supervisor.tell(changed)
        for subscriber in list(self._subscribers):
            try:
                subscriber.tell(changed)
            except pykka.ActorDeadError:
                log.info("dropping dead subscriber %s", subscriber)
                self._subscribers.remove(subscriber)

    # ------------------------------------------------------------------ commands

    def _send(self, command: SendCommand) -> None:
        state = self.evse.state
        cid = self._correlation_ids()
        request = CommandRequest(
            station_id=state.station_id,
            id=cid,
            command=command.command,
            evse_id=state.evse_id,
            args=args_dict(command.args),
            ts=self._clock_ms(),
        )
        topic, payload, retain = encode(request)
        timer = None
        if self._timers is not None:
            timer = self._timers.call_later(command.timeout_s, lambda: self._tell_timeout(cid))
        self.evse.pending[cid] = _Pending(
            command=command.command, reply=command.reply, timer=timer, sent_at=time.monotonic()
        )
        if self._bridge is None:
            self._time_out(cid)
            return
        log.info("Evse %s: sending %s (%s)", state.evse_id, command.command, cid)
        self._bridge.tell(Publish(topic=topic, payload=payload, retain=retain))

    def _tell_timeout(self, cid: CorrelationId) -> None:
        """Runs on the timer thread: only a ``tell`` into this actor."""
        with contextlib.suppress(pykka.ActorDeadError):
            self.actor_ref.tell(CommandTimedOut(correlation_id=cid))

    def _time_out(self, cid: CorrelationId) -> None:
        pending = self.evse.pending.pop(cid, None)
        if pending is None:
            return
        error = CommandTimeoutError(
            f"station {self.evse.state.station_id} did not answer {pending.command} "
            f"for EVSE {self.evse.state.evse_id} in time"
        )
        if self._observe_command is not None:
            self._observe_command(pending.command, None)
        pending.reply.set_exception((CommandTimeoutError, error, None))


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


def _wall_ms() -> int:
    import time

    return int(time.time() * 1000)
