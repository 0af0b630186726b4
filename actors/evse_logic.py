"""The whole behaviour of one EVSE, free of threads and clocks.

``Evse.step(message, now_ms) -> effects``: station messages (status reports, meter values,
command replies, births and offline), commands with their correlation ids, their time-outs
and refusals. It changes only the ``Evse`` and returns what must happen; the
:class:`~actors.evse.EvseActor` applies the effects (publish, write the read model and fan
out, complete futures, start and cancel timers, raise alerts, record metrics) and nothing
else. Time comes in as ``now_ms``; correlation ids from the injected ``new_id``, so a test
drives it step by step.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pykka

from actors.evse_state import SESSION_STATUSES, EvseState
from actors.evse_transition import (
    EvseEvent,
    Ignored,
    Inconsistent,
    MeterReset,
    StationCameOnline,
    StationWentOffline,
    transition,
)
from actors.messages import CommandOutcome, EvseChanged, SendCommand
from protocol import (
    CommandName,
    CommandReply,
    CommandRequest,
    CorrelationId,
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
)
from storage.errors import CommandTimeoutError

__all__ = [
    "Alert",
    "CancelTimer",
    "Evse",
    "Observe",
    "Reject",
    "Resolve",
    "SendRequest",
    "StartTimer",
    "TimedOut",
    "new_correlation_id",
]

log = logging.getLogger(__name__)

MAX_ABANDONED = 64
LATE_STOP_TIMEOUT_S = 10.0


def new_correlation_id() -> CorrelationId:
    return CorrelationId(uuid.uuid4().hex)


# ---------------------------------------------------------------------- messages in


@dataclass(frozen=True, slots=True)
class TimedOut:
    """The timer of command ``correlation_id`` fired."""

    correlation_id: CorrelationId


# ---------------------------------------------------------------------- effects out


@dataclass(frozen=True, slots=True)
class SendRequest:
    """Publish ``request`` to the station (command ``request.id``)."""

    request: CommandRequest


@dataclass(frozen=True, slots=True)
class StartTimer:
    correlation_id: CorrelationId
    after_s: float


@dataclass(frozen=True, slots=True)
class CancelTimer:
    correlation_id: CorrelationId


@dataclass(frozen=True, slots=True)
class Resolve:
    """Complete the caller's future with ``outcome``."""

    reply: pykka.Future[Any]
    outcome: CommandOutcome


@dataclass(frozen=True, slots=True)
class Reject:
    """Fail the caller's future with ``error``."""

    reply: pykka.Future[Any]
    error: Exception


@dataclass(frozen=True, slots=True)
class Observe:
    """A command's round trip for the metrics (``None``: it timed out)."""

    command: CommandName
    seconds: float | None


@dataclass(frozen=True, slots=True)
class Alert:
    """An operator alert about this EVSE."""

    kind: str
    message: str


Effect = EvseChanged | SendRequest | StartTimer | CancelTimer | Resolve | Reject | Observe | Alert


@dataclass
class _Pending:
    command: CommandName
    reply: pykka.Future[Any]
    sent_at_ms: int
    args: Any = None
    """The command's typed arguments (a timed-out start's session is remembered)."""


@dataclass
class Evse:
    """One EVSE's state machine and its commands in flight."""

    state: EvseState
    new_id: Callable[[], CorrelationId] = new_correlation_id
    pending: dict[CorrelationId, _Pending] = field(default_factory=dict)
    ignored: int = 0
    abandoned: dict[SessionId, None] = field(default_factory=dict)
    """Sessions whose ``start`` timed out: the driver was told it did not start, so if the
    station reports one of them running after all, the CSMS stops it (oldest dropped
    first past :data:`MAX_ABANDONED`)."""

    def step(self, message: Any, now_ms: int) -> list[Effect]:
        """Handle one message; return what must happen, in order."""
        match message:
            case SendCommand() as command:
                return self._send(command, now_ms)
            case TimedOut(correlation_id=cid):
                return self._time_out(cid)
            case CommandReply(id=cid) if cid not in self.pending:
                # No command of ours (forged, or late after its time-out): its info stands
                # outside the (epoch, seq) order, so it must not open a session or move a status.
                self.ignored += 1
                log.warning("Evse %s: reply %s matches no pending command", self.state.evse_id, cid)
                return []
            case StatusReport() | MeterValues() | CommandReply():
                return self._inbound(message, message, now_ms)
            case StationBirth(ts=ts, epoch=epoch, station=station):
                local = self.state.descriptor.id
                descriptor = next((e for e in station.evses if e.id == local), None)
                event = StationCameOnline(ts=ts, epoch=epoch, descriptor=descriptor)
                return self._inbound(message, event, now_ms)
            case StationOffline(ts=ts, reason=reason):
                return self._inbound(message, StationWentOffline(ts=ts, reason=reason), now_ms)
        log.warning("Evse %s: unexpected message %r", self.state.evse_id, message)
        return []

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

    def fail_all(self, error: Exception) -> list[Effect]:
        """Every command in flight fails with ``error`` (the EVSE's actor is ending)."""
        out: list[Effect] = []
        for cid, pending in self.pending.items():
            out += [CancelTimer(cid), Reject(pending.reply, error)]
        self.pending.clear()
        return out

    # ------------------------------------------------------------------ station messages

    def _inbound(self, message: Any, event: EvseEvent, now_ms: int) -> list[Effect]:
        out: list[Effect] = []
        changed = self.apply(event)
        evse_id = self.state.evse_id
        if changed is not None:
            out.append(changed)
            for effect in changed.effects:
                if isinstance(effect, MeterReset):
                    out.append(
                        Alert(
                            "meter_reset",
                            f"EVSE {evse_id}: energy register went back from "
                            f"{effect.before_wh:.0f} Wh to {effect.after_wh:.0f} Wh (meter "
                            "reset); the session's energy carries on",
                        )
                    )
                elif isinstance(effect, Inconsistent):
                    out.append(
                        Alert(
                            "inconsistent_report",
                            f"EVSE {evse_id}: {effect.why} (applied: the station is the authority)",
                        )
                    )
        if isinstance(message, CommandReply):
            out += self._complete(message, now_ms)
        late = self._running_abandoned()
        if late is not None:
            # Started after the CSMS stopped waiting for that start: the driver was told it
            # failed, so it is stopped, and recorded with no driver.
            stop = SendCommand(
                args=StopArgs(session_id=late),
                reply=pykka.ThreadingFuture(),
                timeout_s=LATE_STOP_TIMEOUT_S,
            )
            out += self._send(stop, now_ms)
            out.append(
                Alert(
                    "late_session_stopped",
                    f"EVSE {evse_id} started session {late} after its start timed out; "
                    "stopping it (nobody is charged)",
                )
            )
        return out

    def _complete(self, reply: CommandReply, now_ms: int) -> list[Effect]:
        pending = self.pending.pop(reply.id)
        outcome = CommandOutcome(
            command=reply.command,
            accepted=reply.accepted,
            reason=reply.reason,
            info=reply.info,
            state=self.state,
        )
        seconds = max(0.0, (now_ms - pending.sent_at_ms) / 1000)
        return [  # the metrics before the caller runs
            CancelTimer(reply.id),
            Observe(pending.command, seconds),
            Resolve(pending.reply, outcome),
        ]

    def _running_abandoned(self) -> SessionId | None:
        """A session the station runs although its start was given up on (then forgotten)."""
        state = self.state
        sid = state.session_id
        running = state.status in SESSION_STATUSES or state.status is EvseStatus.PREPARING
        if sid is None or not running or sid not in self.abandoned:
            return None
        del self.abandoned[sid]
        return sid

    # ------------------------------------------------------------------ commands

    def _send(self, command: SendCommand, now_ms: int) -> list[Effect]:
        state = self.state
        if not state.reachable:
            # Never queued in the station's session to run when it reconnects: refused now.
            refused = CommandOutcome(
                command=command.command,
                accepted=False,
                reason=RejectReason.OFFLINE,
                info=None,
                state=state,
            )
            return [Resolve(command.reply, refused)]
        cid = self.new_id()
        request = CommandRequest(
            station_id=state.station_id,
            id=cid,
            command=command.command,
            evse_id=state.descriptor.id,
            expires_at=now_ms + int(command.timeout_s * 1000),
            args=args_dict(command.args),
            ts=now_ms,
        )
        self.pending[cid] = _Pending(
            command=command.command, reply=command.reply, sent_at_ms=now_ms, args=command.args
        )
        return [StartTimer(cid, command.timeout_s), SendRequest(request)]

    def _time_out(self, cid: CorrelationId) -> list[Effect]:
        pending = self.pending.pop(cid, None)
        if pending is None:
            return []
        error = CommandTimeoutError(
            f"station {self.state.station_id} did not answer {pending.command} "
            f"for EVSE {self.state.evse_id} in time"
        )
        if isinstance(pending.args, StartArgs):
            self.abandoned[pending.args.session_id] = None
            while len(self.abandoned) > MAX_ABANDONED:
                del self.abandoned[next(iter(self.abandoned))]
        return [CancelTimer(cid), Observe(pending.command, None), Reject(pending.reply, error)]
