"""How one EVSE's state changes: ``transition(state, event) -> (state, effects)``.

The function is pure (no I/O, no clock) and works on :class:`~actors.evse_state.EvseState`;
:class:`~actors.evse.EvseActor` performs the effects. The allowed status changes
are data (:data:`TRANSITIONS`), read by the docs and by the property tests.

The station is the authority on an EVSE's status: the CSMS follows its reports,
but refuses reports that are stale (an ``(epoch, seq)`` not above the last one
accepted; a birth announces the epoch, and a new epoch starts the count again) or
invalid (a session status without a session id, implausible power). A status change
the table does not expect is applied (the station is the authority; refusing it could
lock the EVSE) with an :class:`Inconsistent` effect for the operator.
Refused reports are returned as an :class:`Ignored` effect, to be logged; they never
raise. An energy register that goes backwards is a meter reset (a new register, e.g.
a replaced meter), never a reason to refuse a status: :class:`MeterReset` tells the
operator, and the session's energy carries on from the station's own count.

Status diagram (OCPP 1.6 connector statuses, plus the CSMS-only ``Offline``)::

    Available ──reserve──▶ Reserved ──start──▶ Preparing ──▶ Charging ⇄ SuspendedEV/EVSE
        ▲  ▲                  │                                  │
        │  └──────cancel──────┘                                  ▼
        └───────────unplug────────────────────────────────── Finishing ──▶ Unavailable
    Unavailable (maintenance) ⇄ Available;  any ──▶ Faulted;  any ──last will──▶ Offline
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Final

from actors.evse_state import SESSION_STATUSES, EvseState
from protocol import (
    CommandReply,
    EvseDescriptor,
    EvseInfo,
    EvseStatus,
    MeterValues,
    SessionId,
    StatusReport,
    StopReason,
    evse_values,
)

__all__ = [
    "TRANSITIONS",
    "Effect",
    "EvseEvent",
    "Ignored",
    "Inconsistent",
    "MarkFaulted",
    "MeterReset",
    "SessionClosed",
    "SessionOpened",
    "StateChanged",
    "StationCameOnline",
    "StationWentOffline",
    "is_legal",
    "transition",
]

S = EvseStatus

_ANY_STATION_STATUS: Final = frozenset(s for s in S if s is not S.OFFLINE)

TRANSITIONS: Final[Mapping[EvseStatus, frozenset[EvseStatus]]] = MappingProxyType(
    {
        S.AVAILABLE: frozenset({S.RESERVED, S.PREPARING, S.CHARGING, S.UNAVAILABLE, S.FAULTED}),
        S.RESERVED: frozenset({S.AVAILABLE, S.PREPARING, S.CHARGING, S.UNAVAILABLE, S.FAULTED}),
        S.PREPARING: frozenset(
            {
                S.AVAILABLE,
                S.CHARGING,
                S.SUSPENDED_EV,
                S.SUSPENDED_EVSE,
                S.FINISHING,
                S.UNAVAILABLE,
                S.FAULTED,
            }
        ),
        S.CHARGING: frozenset(
            {S.SUSPENDED_EV, S.SUSPENDED_EVSE, S.FINISHING, S.AVAILABLE, S.FAULTED}
        ),
        S.SUSPENDED_EV: frozenset(
            {S.CHARGING, S.SUSPENDED_EVSE, S.FINISHING, S.AVAILABLE, S.FAULTED}
        ),
        S.SUSPENDED_EVSE: frozenset(
            {S.CHARGING, S.SUSPENDED_EV, S.FINISHING, S.AVAILABLE, S.FAULTED}
        ),
        S.FINISHING: frozenset({S.AVAILABLE, S.PREPARING, S.RESERVED, S.UNAVAILABLE, S.FAULTED}),
        S.UNAVAILABLE: frozenset({S.AVAILABLE, S.FAULTED}),
        S.FAULTED: frozenset(
            {
                S.AVAILABLE,
                S.UNAVAILABLE,
                S.PREPARING,
                S.FINISHING,
                S.CHARGING,
                S.SUSPENDED_EV,
                S.SUSPENDED_EVSE,
                S.RESERVED,
            }
        ),
        # Back from a lost connection the station may be anywhere.
        S.OFFLINE: _ANY_STATION_STATUS,
    }
)
"""Status changes a station may report, by current status. Staying in a status is always legal."""


_POWER_TOLERANCE: Final = 1.1
"""How far above its ``max_power_w`` an EVSE's reported power may be (meter tolerance)."""


def is_legal(current: EvseStatus, new: EvseStatus) -> bool:
    return new == current or new in TRANSITIONS[current]


# --------------------------------------------------------------------------- inputs


@dataclass(frozen=True, slots=True, kw_only=True)
class StationCameOnline:
    """The station published its birth (describing this EVSE as ``descriptor``).

    A birth with another ``epoch`` than the current one starts the ``seq`` count again
    (a reboot, or a station that lost its counter); with the same epoch (a reconnect) the
    count goes on, so messages the station kept while offline still apply after it."""

    ts: int
    epoch: int = 0
    descriptor: EvseDescriptor | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class StationWentOffline:
    """The station's last will (or clean shutdown) arrived."""

    ts: int
    reason: str = "connection_lost"


@dataclass(frozen=True, slots=True, kw_only=True)
class MarkFaulted:
    """The CSMS itself gives up on this EVSE (e.g. its actor keeps crashing)."""

    reason: str


EvseEvent = (
    StatusReport | MeterValues | CommandReply | StationCameOnline | StationWentOffline | MarkFaulted
)


# --------------------------------------------------------------------------- effects


@dataclass(frozen=True, slots=True, kw_only=True)
class StateChanged:
    before: EvseState
    after: EvseState


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionOpened:
    session_id: SessionId
    energy_wh: float


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionClosed:
    session_id: SessionId
    session_energy_wh: float
    reason: StopReason | None


@dataclass(frozen=True, slots=True, kw_only=True)
class MeterReset:
    """The energy register went backwards (a new meter, or a station's lost state): the
    report applied, with ``before_wh`` -> ``after_wh`` as the new register's start."""

    before_wh: float
    after_wh: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Inconsistent:
    """A report applied although the transition table does not expect it (an operator
    should look: a station bug, or reports lost on the way)."""

    why: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Ignored:
    """A report refused as stale or illegal; the state is unchanged."""

    why: str


Effect = StateChanged | SessionOpened | SessionClosed | MeterReset | Inconsistent | Ignored


# --------------------------------------------------------------------------- transition


def transition(state: EvseState, event: EvseEvent) -> tuple[EvseState, tuple[Effect, ...]]:
    """Apply one event to one EVSE's state. Pure: same inputs, same outputs, no I/O."""
    match event:
        case StatusReport(info=info, seq=seq, ts=ts, epoch=epoch):
            stale = _stale(state, epoch, seq)
            if stale:
                return state, (Ignored(why=stale),)
            return _apply_info(replace(state, epoch=epoch, seq=seq, ts=ts), info, state)
        case MeterValues() as meter:
            return _apply_meter(state, meter)
        case CommandReply(info=info, ts=ts) if info is not None:
            if ts < state.ts:
                return state, (Ignored(why=f"reply info older than last report ({ts}<{state.ts})"),)
            # Replies carry no seq: they may refresh the view but never move the floor.
            return _apply_info(state, info, state)
        case CommandReply():
            return state, ()
        case StationCameOnline(epoch=epoch, descriptor=descriptor):
            after = state if state.station_online else replace(state, station_online=True)
            if epoch != state.epoch:
                after = replace(after, epoch=epoch, seq=-1)
            if descriptor is not None and descriptor != state.descriptor:
                after = replace(after, descriptor=descriptor)
            if after is state:
                return state, ()
            return _changed(state, after)
        case StationWentOffline():
            if state.status is S.OFFLINE and not state.station_online:
                return state, ()
            return _changed(
                state,
                replace(
                    state,
                    status=S.OFFLINE,
                    power_w=0.0,
                    status_before_offline=(
                        state.status_before_offline if state.status is S.OFFLINE else state.status
                    ),
                    station_online=False,
                ),
            )
        case MarkFaulted():
            return _changed(
                state,
                replace(
                    state,
                    status=S.FAULTED,
                    power_w=0.0,
                    status_before_offline=None,
                    faulted_by_csms=True,
                    session_id=None,
                ),
            )
    return state, (Ignored(why=f"unexpected event {type(event).__name__}"),)


def _stale(state: EvseState, epoch: int, seq: int) -> str | None:
    """Reports are ordered by ``(epoch, seq)``; ``ts`` orders nothing (a station's clock
    may jump, and the bridge refuses reports stamped in the future)."""
    if (epoch, seq) <= (state.epoch, state.seq):
        return f"stale report: (epoch, seq) ({epoch}, {seq}) <= ({state.epoch}, {state.seq})"
    return None


def _illegal(state: EvseState, info: EvseInfo) -> str | None:
    if info.status in SESSION_STATUSES and info.session_id is None:
        return f"{info.status} without a session id"
    return _implausible(state, info.power_w)


def _implausible(state: EvseState, power_w: float) -> str | None:
    """An EVSE cannot deliver far more than its station says it can (a broken meter or a
    forged report): refused rather than shown and billed."""
    max_power_w = state.descriptor.max_power_w
    if power_w > max_power_w * _POWER_TOLERANCE + 100.0:
        return f"implausible power {power_w:.0f} W for an EVSE of {max_power_w:.0f} W"
    return None


def _apply_info(
    state: EvseState, info: EvseInfo, before: EvseState
) -> tuple[EvseState, tuple[Effect, ...]]:
    why = _illegal(before, info)
    if why:
        return before, (Ignored(why=why),)
    unexpected = None
    if not is_legal(before.status, info.status):
        # The station is the authority: a change the table does not expect (reports missed,
        # a station bug) is applied, never a reason to lock the EVSE, and an operator told.
        unexpected = Inconsistent(why=f"unexpected change {before.status} -> {info.status}")
    after = replace(state, **evse_values(info), status_before_offline=None, faulted_by_csms=False)
    state_after, effects = _changed(before, after)
    if unexpected is not None:
        effects = (*effects, unexpected)
    if info.energy_wh < before.energy_wh:
        effects = (*effects, MeterReset(before_wh=before.energy_wh, after_wh=info.energy_wh))
    return state_after, effects


def _apply_meter(state: EvseState, meter: MeterValues) -> tuple[EvseState, tuple[Effect, ...]]:
    stale = _stale(state, meter.epoch, meter.seq)
    if stale:
        return state, (Ignored(why=stale),)
    if state.status not in SESSION_STATUSES and state.status is not S.PREPARING:
        return state, (Ignored(why=f"meter values while {state.status}"),)
    implausible = _implausible(state, meter.power_w)
    if implausible:
        return state, (Ignored(why=implausible),)
    if meter.session_id is not None and meter.session_id != state.session_id:
        return state, (
            Ignored(why=f"meter values for session {meter.session_id}, not {state.session_id}"),
        )
    reset = meter.energy_wh < state.energy_wh  # a new register: this sample adds nothing
    added = 0.0 if reset else meter.energy_wh - state.energy_wh
    after = replace(
        state,
        epoch=meter.epoch,
        seq=meter.seq,
        ts=meter.ts,
        power_w=meter.power_w,
        energy_wh=meter.energy_wh,
        soc=meter.soc if meter.soc is not None else state.soc,
        session_energy_wh=state.session_energy_wh + added,
    )
    new_state, effects = _changed(state, after)
    if reset:
        effects = (*effects, MeterReset(before_wh=state.energy_wh, after_wh=meter.energy_wh))
    return new_state, effects


def _changed(before: EvseState, after: EvseState) -> tuple[EvseState, tuple[Effect, ...]]:
    effects: list[Effect] = [StateChanged(before=before, after=after)]
    was_open, is_open = before.session_open, after.session_open
    if was_open and (not is_open or after.session_id != before.session_id) and before.session_id:
        # A report that still names the session (Finishing) carries the station's own total:
        # the authority, even when meter values were missed (a CSMS restart).
        same = after.session_id == before.session_id
        effects.append(
            SessionClosed(
                session_id=before.session_id,
                session_energy_wh=after.session_energy_wh if same else before.session_energy_wh,
                reason=after.stop_reason,
            )
        )
    if is_open and (not was_open or after.session_id != before.session_id) and after.session_id:
        effects.append(SessionOpened(session_id=after.session_id, energy_wh=after.energy_wh))
    elif _seen_only_at_its_end(before, after) and after.session_id:
        # The session started and ended while the CSMS was not listening (a restart): the
        # station's Finishing report says all there is to record, so open and close it.
        effects.append(SessionOpened(session_id=after.session_id, energy_wh=after.energy_wh))
        effects.append(
            SessionClosed(
                session_id=after.session_id,
                session_energy_wh=after.session_energy_wh,
                reason=after.stop_reason,
            )
        )
    return after, tuple(effects)


def _seen_only_at_its_end(before: EvseState, after: EvseState) -> bool:
    """A Finishing report of a session that delivered energy but was never open here.

    Never in an unbroken stream (energy flows only while Charging, which opens the
    session); a session stopped while Preparing delivered nothing and is not recorded.
    """
    return (
        after.status is S.FINISHING
        and after.session_id is not None
        and after.session_energy_wh > 0
        and not before.session_open
        and not (before.status is S.FINISHING and before.session_id == after.session_id)
    )
