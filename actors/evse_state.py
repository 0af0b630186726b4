"""The CSMS's view of one EVSE: an immutable state and a pure transition function.

``transition(state, event) -> (state, effects)`` does no I/O and reads no clock;
:class:`~actors.evse.EvseActor` performs the effects. The allowed status changes
are data (:data:`TRANSITIONS`), read by the docs and by the property tests.

The station is the authority on an EVSE's status: the CSMS follows its reports,
but refuses reports that are stale (older ``seq`` or ``ts`` than the last one
accepted from that station since its last birth) or illegal (a status change not
in the table, a session status without a session id, an energy register going
backwards). Refused reports are returned as an :class:`Ignored` effect, to be
logged; they never raise.

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

from actors.protocol import (
    CommandReply,
    EvseId,
    EvseInfo,
    EvseStatus,
    MeterValues,
    SessionId,
    StationId,
    StatusReport,
    StopReason,
)

__all__ = [
    "SESSION_STATUSES",
    "TRANSITIONS",
    "Effect",
    "EvseEvent",
    "EvseState",
    "Ignored",
    "MarkFaulted",
    "SessionClosed",
    "SessionOpened",
    "StateChanged",
    "StationCameOnline",
    "StationWentOffline",
    "is_legal",
    "transition",
]

S = EvseStatus

SESSION_STATUSES: Final = frozenset({S.CHARGING, S.SUSPENDED_EV, S.SUSPENDED_EVSE})

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


def is_legal(current: EvseStatus, new: EvseStatus) -> bool:
    return new == current or new in TRANSITIONS[current]


@dataclass(frozen=True, slots=True, kw_only=True)
class EvseState:
    """What the CSMS knows of one EVSE. ``seq``/``ts`` are the last accepted report's."""

    evse_id: EvseId
    station_id: StationId
    max_power_w: float = 22_000.0
    connector: str = "Type2"
    status: EvseStatus = S.OFFLINE
    soc: float | None = None
    power_w: float = 0.0
    energy_wh: float = 0.0
    session_id: SessionId | None = None
    session_energy_wh: float = 0.0
    target_soc: float | None = None
    reservation_id: str | None = None
    maintenance: bool = False
    maintenance_pending: bool = False
    stop_reason: StopReason | None = None
    status_before_offline: EvseStatus | None = None
    seq: int = -1
    ts: int = -1
    faulted_by_csms: bool = False

    @property
    def session_open(self) -> bool:
        """A session is open while charging or suspended (also while offline from there)."""
        effective = self.status_before_offline if self.status is S.OFFLINE else self.status
        return effective in SESSION_STATUSES

    def info(self) -> EvseInfo:
        return EvseInfo(
            evse_id=self.evse_id,
            status=self.status,
            soc=self.soc,
            power_w=self.power_w,
            energy_wh=self.energy_wh,
            session_id=self.session_id,
            session_energy_wh=self.session_energy_wh,
            target_soc=self.target_soc,
            reservation_id=self.reservation_id,
            maintenance=self.maintenance,
            maintenance_pending=self.maintenance_pending,
            stop_reason=self.stop_reason,
        )


# --------------------------------------------------------------------------- inputs


@dataclass(frozen=True, slots=True, kw_only=True)
class StationCameOnline:
    """The station published its birth: a new connection, so its sequence restarts."""

    ts: int


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
class Ignored:
    """A report refused as stale or illegal; the state is unchanged."""

    why: str


Effect = StateChanged | SessionOpened | SessionClosed | Ignored


# --------------------------------------------------------------------------- transition


def transition(state: EvseState, event: EvseEvent) -> tuple[EvseState, tuple[Effect, ...]]:
    """Apply one event to one EVSE's state. Pure: same inputs, same outputs, no I/O."""
    match event:
        case StatusReport(info=info, seq=seq, ts=ts):
            stale = _stale(state, seq, ts)
            if stale:
                return state, (Ignored(why=stale),)
            return _apply_info(replace(state, seq=seq, ts=ts), info, state)
        case MeterValues() as meter:
            return _apply_meter(state, meter)
        case CommandReply(info=info, ts=ts) if info is not None:
            if ts < state.ts:
                return state, (Ignored(why=f"reply info older than last report ({ts}<{state.ts})"),)
            # Replies carry no seq: they may refresh the view but never move the floor.
            return _apply_info(state, info, state)
        case CommandReply():
            return state, ()
        case StationCameOnline():
            return _changed(state, replace(state, seq=-1, ts=-1))
        case StationWentOffline():
            if state.status is S.OFFLINE:
                return state, ()
            return _changed(
                state,
                replace(state, status=S.OFFLINE, power_w=0.0, status_before_offline=state.status),
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


def _stale(state: EvseState, seq: int, ts: int) -> str | None:
    if seq <= state.seq:
        return f"stale report: seq {seq} <= {state.seq}"
    if ts < state.ts:
        return f"stale report: ts {ts} < {state.ts}"
    return None


def _illegal(state: EvseState, info: EvseInfo) -> str | None:
    current = state.status
    if not is_legal(current, info.status):
        return f"illegal transition {current} -> {info.status}"
    if info.status in SESSION_STATUSES and info.session_id is None:
        return f"{info.status} without a session id"
    if info.energy_wh < state.energy_wh:
        return f"energy register went backwards ({info.energy_wh} < {state.energy_wh})"
    return None


def _apply_info(
    state: EvseState, info: EvseInfo, before: EvseState
) -> tuple[EvseState, tuple[Effect, ...]]:
    why = _illegal(before, info)
    if why:
        return before, (Ignored(why=why),)
    after = replace(
        state,
        status=info.status,
        soc=info.soc,
        power_w=info.power_w,
        energy_wh=info.energy_wh,
        session_id=info.session_id,
        session_energy_wh=info.session_energy_wh,
        target_soc=info.target_soc,
        reservation_id=info.reservation_id,
        maintenance=info.maintenance,
        maintenance_pending=info.maintenance_pending,
        stop_reason=info.stop_reason,
        status_before_offline=None,
        faulted_by_csms=False,
    )
    return _changed(before, after)


def _apply_meter(state: EvseState, meter: MeterValues) -> tuple[EvseState, tuple[Effect, ...]]:
    stale = _stale(state, meter.seq, meter.ts)
    if stale:
        return state, (Ignored(why=stale),)
    if state.status not in SESSION_STATUSES and state.status is not S.PREPARING:
        return state, (Ignored(why=f"meter values while {state.status}"),)
    if meter.session_id is not None and meter.session_id != state.session_id:
        return state, (
            Ignored(why=f"meter values for session {meter.session_id}, not {state.session_id}"),
        )
    if meter.energy_wh < state.energy_wh:
        return state, (Ignored(why="energy register went backwards"),)
    session_energy = state.session_energy_wh + (meter.energy_wh - state.energy_wh)
    after = replace(
        state,
        seq=meter.seq,
        ts=meter.ts,
        power_w=meter.power_w,
        energy_wh=meter.energy_wh,
        soc=meter.soc if meter.soc is not None else state.soc,
        session_energy_wh=session_energy,
    )
    return _changed(state, after)


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
