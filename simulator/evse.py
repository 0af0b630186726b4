"""One EVSE's state machine as pure functions: ``(spec, state, input, now) -> Outcome``.

No I/O and no clock reads: the station passes the simulated time and every
random draw comes from an RNG derived from ``(seed, evse id, draw counter)``,
so a run is replayable and a restarted station continues the same sequence.
Only logging happens here, because the operators read those lines.

State diagram::

    Available --reserve--> Reserved --cancel_reservation / expiry--> Available
    Available, Reserved(matching id) --start--> Preparing --next tick--> Charging
    Preparing, Charging, SuspendedEVSE --stop (Remote) / SoC reached (SoCReached)--> Finishing
    Finishing --driver unplugs (10-60 s)--> Available, or Unavailable if maintenance is pending
    Available, Reserved --maintenance on--> Unavailable --maintenance off--> Available
    Preparing, Charging, SuspendedEVSE, Finishing --maintenance on--> (same, maintenance_pending)
    Charging --limit below min_power_w--> SuspendedEVSE --limit at or above it--> Charging
    Preparing --next tick, limit below min_power_w--> SuspendedEVSE

Power limits (``set_limit``, ``docs/protocol.md`` section 6.4): the limit in force caps every
meter sample from the next one on; at its ``expires_at`` it becomes its fallback (or the
EVSE's ``min_power_w``), and a limit below ``min_power_w`` (or under 1 W) withholds energy.
"""

from __future__ import annotations

import logging
import math
import random
from dataclasses import replace
from typing import Final

from protocol import (
    CancelReservationArgs,
    CommandArgs,
    EvseStatus,
    MaintenanceArgs,
    RejectReason,
    ReserveArgs,
    SetLimitArgs,
    StartArgs,
    StopArgs,
    StopReason,
)
from simulator.evse_model import EventKind, EvseEvent, EvseSpec, EvseState, Outcome
from simulator.physics import charge, draw_car, draw_unplug_delay

__all__ = ["EventKind", "EvseEvent", "EvseSpec", "EvseState", "Outcome", "advance", "apply"]

log = logging.getLogger("simulator.evse")

S = EvseStatus
IN_SESSION: Final = frozenset({S.PREPARING, S.CHARGING, S.SUSPENDED_EVSE})
#: Why a start or a reservation is refused, by status (Reserved is checked separately).
BLOCKED: Final[dict[EvseStatus, RejectReason]] = {
    S.PREPARING: RejectReason.BUSY,
    S.CHARGING: RejectReason.BUSY,
    S.SUSPENDED_EV: RejectReason.BUSY,
    S.SUSPENDED_EVSE: RejectReason.BUSY,
    S.FINISHING: RejectReason.FINISHING,
    S.UNAVAILABLE: RejectReason.MAINTENANCE,
    S.FAULTED: RejectReason.FAULTED,
    S.OFFLINE: RejectReason.FAULTED,
}


def apply(spec: EvseSpec, state: EvseState, args: CommandArgs, now: float) -> Outcome:
    """Apply one validated command (``None`` args is ``info``, which changes nothing)."""
    match args:
        case StartArgs():
            return _start(spec, state, args, now)
        case StopArgs():
            return _stop(spec, state, args, now)
        case MaintenanceArgs(enabled=True):
            return _maintenance_on(state, now)
        case MaintenanceArgs(enabled=False):
            return _maintenance_off(state, now)
        case ReserveArgs():
            return _reserve(state, args, now)
        case CancelReservationArgs():
            return _cancel_reservation(state, args, now)
        case SetLimitArgs():
            return _set_limit(spec, state, args, now)
    return Outcome(state=state)


def advance(spec: EvseSpec, state: EvseState, now: float) -> Outcome:
    """Let simulated time pass up to ``now``: expiries, meter samples, session end, unplug."""
    events: list[EvseEvent] = []
    if state.status is S.RESERVED and _expired(state, now):
        state = _emit(
            events,
            now,
            replace(state, status=S.AVAILABLE, reservation_id=None, reservation_expires_at=None),
        )
    state = _settle(spec, state, now, events)  # e.g. restored with a limit under a new minimum
    if state.status is not S.CHARGING and _limit_lapsed(state, now):
        state = _lapse(spec, state, events)
    if state.status is S.PREPARING:
        withheld = _withheld(spec, state)
        state = _emit(
            events,
            now,
            replace(
                state,
                status=S.SUSPENDED_EVSE if withheld else S.CHARGING,
                last_sample_at=now,
            ),
        )
    while True:  # meter samples in order, and the limit's lapse where it falls among them
        due = _next_sample(spec, state) if state.status is S.CHARGING else math.inf
        if _limit_lapsed(state, min(due, now)):  # the sample after the lapse meters the fallback
            state = _lapse(spec, state, events)  # clears the expiry: at most once per call
            continue
        if due > now:
            break
        state, reached = _sample(spec, state, due)
        events.append(EvseEvent(kind=EventKind.METER, at=_sampled_at(state), state=state))
        if reached:
            state = _emit(
                events,
                _sampled_at(state),
                _finish(spec, state, _sampled_at(state), StopReason.SOC_REACHED),
            )
    if state.status is S.FINISHING and state.unplug_at is not None and state.unplug_at <= now:
        state = _emit(events, state.unplug_at, _unplug(state))
    return Outcome(state=state, events=tuple(events))


# --------------------------------------------------------------------------- commands


def _start(spec: EvseSpec, state: EvseState, args: StartArgs, now: float) -> Outcome:
    if state.status is S.RESERVED:
        if args.reservation_id is None or args.reservation_id != state.reservation_id:
            return Outcome(state=state, reason=RejectReason.RESERVED)
    elif state.status is not S.AVAILABLE:
        return Outcome(state=state, reason=BLOCKED[state.status])
    car, soc = draw_car(_rng(spec, state), spec.descriptor.connector)
    log.info("Evse %s executing charge", state.evse_id)
    return _changed(
        state,
        now,
        replace(
            state,
            status=S.PREPARING,
            car=car,
            soc=soc,
            power_w=0.0,
            session_id=args.session_id,
            session_energy_wh=0.0,
            target_soc=args.target_soc,
            reservation_id=None,
            reservation_expires_at=None,
            stop_reason=None,
            last_sample_at=None,
            draws=state.draws + 1,
        ),
    )


def _stop(spec: EvseSpec, state: EvseState, args: StopArgs, now: float) -> Outcome:
    if state.status not in IN_SESSION:
        return Outcome(state=state, reason=RejectReason.NO_SESSION)
    if args.session_id is not None and args.session_id != state.session_id:
        return Outcome(state=state, reason=RejectReason.SESSION_MISMATCH)
    events: list[EvseEvent] = []
    last = state.last_sample_at
    if state.status is S.CHARGING and last is not None and now > last:
        state, _ = _sample(spec, state, now)  # meter the seconds before the contactor opens
        events.append(EvseEvent(kind=EventKind.METER, at=now, state=state))
    _emit(events, now, _finish(spec, state, now, StopReason.REMOTE))
    return Outcome(state=events[-1].state, events=tuple(events))


def _maintenance_on(state: EvseState, now: float) -> Outcome:
    if state.status in (S.AVAILABLE, S.RESERVED, S.UNAVAILABLE):
        if not state.maintenance:
            log.info("Evse %s is in status maintenance", state.evse_id)
        return _changed(
            state,
            now,
            replace(
                state,
                status=S.UNAVAILABLE,
                maintenance=True,
                maintenance_pending=False,
                reservation_id=None,
                reservation_expires_at=None,
            ),
        )
    if state.status in (S.PREPARING, S.CHARGING, S.SUSPENDED_EVSE, S.FINISHING):
        log.info("Evse %s will enter maintenance when its session ends", state.evse_id)
        return _changed(state, now, replace(state, maintenance_pending=True))
    return Outcome(state=state, reason=BLOCKED[state.status])


def _maintenance_off(state: EvseState, now: float) -> Outcome:
    if state.status is S.UNAVAILABLE:
        log.info("Evse %s is back in service", state.evse_id)
        return _changed(state, now, replace(state, status=S.AVAILABLE, maintenance=False))
    return _changed(state, now, replace(state, maintenance_pending=False))


def _reserve(state: EvseState, args: ReserveArgs, now: float) -> Outcome:
    renewing = state.status is S.RESERVED and state.reservation_id == args.reservation_id
    if state.status is S.RESERVED and not renewing:
        return Outcome(state=state, reason=RejectReason.RESERVED)
    if state.status not in (S.AVAILABLE, S.RESERVED):
        return Outcome(state=state, reason=BLOCKED[state.status])
    return _changed(
        state,
        now,
        replace(
            state,
            status=S.RESERVED,
            reservation_id=args.reservation_id,
            reservation_expires_at=args.expires_at,
            stop_reason=None,
        ),
    )


def _cancel_reservation(state: EvseState, args: CancelReservationArgs, now: float) -> Outcome:
    if state.status is not S.RESERVED:
        return Outcome(state=state, reason=RejectReason.NOT_RESERVED)
    if args.reservation_id is not None and args.reservation_id != state.reservation_id:
        return Outcome(state=state, reason=RejectReason.RESERVATION_MISMATCH)
    return _changed(
        state,
        now,
        replace(state, status=S.AVAILABLE, reservation_id=None, reservation_expires_at=None),
    )


def _set_limit(spec: EvseSpec, state: EvseState, args: SetLimitArgs, now: float) -> Outcome:
    """Accepted in every status: the limit waits for the next session if none runs."""
    log.info(
        "Evse %s limited to %.0f W until %d (then %s W)", state.evse_id, args.limit_w,
        args.expires_at, "min" if args.fallback_w is None else f"{args.fallback_w:.0f}",
    )  # fmt: skip
    limited = replace(
        state, limit_w=args.limit_w, limit_expires_at=args.expires_at, fallback_w=args.fallback_w
    )
    if _limit_lapsed(limited, now):  # already past: the fallback at once
        limited = replace(
            limited, limit_w=_fallback(spec, limited), limit_expires_at=None, fallback_w=None
        )
    events: list[EvseEvent] = []
    return Outcome(state=_settle(spec, limited, now, events), events=tuple(events))


# --------------------------------------------------------------------------- power limits


def _fallback(spec: EvseSpec, state: EvseState) -> float:
    return spec.descriptor.min_power_w if state.fallback_w is None else state.fallback_w


def _limit_lapsed(state: EvseState, at: float) -> bool:
    expires = state.limit_expires_at
    return expires is not None and at * 1000.0 >= expires


def _withheld(spec: EvseSpec, state: EvseState) -> bool:
    """The limit is too low to charge at all: below the EVSE's minimum, or under 1 W."""
    limit = state.limit_w
    return limit is not None and (limit < 1.0 or limit < spec.descriptor.min_power_w)


def _lapse(spec: EvseSpec, state: EvseState, events: list[EvseEvent]) -> EvseState:
    """The limit reached its ``expires_at``: the fallback is in force from then on."""
    assert state.limit_expires_at is not None
    at = state.limit_expires_at / 1000.0
    log.info("Evse %s: its power limit lapsed, now %.0f W", state.evse_id, _fallback(spec, state))
    lapsed = replace(state, limit_w=_fallback(spec, state), limit_expires_at=None, fallback_w=None)
    return _settle(spec, lapsed, at, events)


def _settle(spec: EvseSpec, state: EvseState, at: float, events: list[EvseEvent]) -> EvseState:
    """Suspend a charging EVSE whose limit is too low, resume a suspended one that may charge.

    ``last_sample_at`` is how far the session is metered: a suspension is never metered, so a
    resumption starts metering afresh, never before the suspension (or a restart) ended."""
    since = at if state.last_sample_at is None else max(at, state.last_sample_at)
    if state.status is S.CHARGING and _withheld(spec, state):
        log.info("Evse %s suspended: its power limit is below its minimum", state.evse_id)
        suspended = replace(state, status=S.SUSPENDED_EVSE, power_w=0.0, last_sample_at=since)
        return _emit(events, since, suspended)
    if state.status is S.SUSPENDED_EVSE and not _withheld(spec, state):
        log.info("Evse %s resumes charging", state.evse_id)
        return _emit(events, since, replace(state, status=S.CHARGING, last_sample_at=since))
    return state


# --------------------------------------------------------------------------- helpers


def _rng(spec: EvseSpec, state: EvseState) -> random.Random:
    """The RNG for this EVSE's next draw: derived, so only a counter needs persisting."""
    return random.Random(f"{spec.rng_key}:{state.evse_id}:{state.draws}")


def _changed(old: EvseState, now: float, new: EvseState) -> Outcome:
    if old.report_key() == new.report_key():
        return Outcome(state=new)
    return Outcome(state=new, events=(EvseEvent(kind=EventKind.STATUS, at=now, state=new),))


def _emit(events: list[EvseEvent], at: float, state: EvseState) -> EvseState:
    events.append(EvseEvent(kind=EventKind.STATUS, at=at, state=state))
    return state


def _expired(state: EvseState, now: float) -> bool:
    expires = state.reservation_expires_at
    return expires is not None and now * 1000.0 >= expires


def _next_sample(spec: EvseSpec, state: EvseState) -> float:
    assert state.last_sample_at is not None
    return state.last_sample_at + spec.meter_interval


def _sampled_at(state: EvseState) -> float:
    assert state.last_sample_at is not None
    return state.last_sample_at


def _sample(spec: EvseSpec, state: EvseState, at: float) -> tuple[EvseState, bool]:
    """Charge from the last sample to ``at`` (or until the target, if that comes first)."""
    assert state.car is not None
    assert state.soc is not None
    assert state.last_sample_at is not None
    target = state.target_soc if state.target_soc is not None else 100.0
    # Whole watts below the limit, so the power on the wire (rounded to 1 W) never exceeds it.
    limit = None if state.limit_w is None else float(math.floor(state.limit_w))
    step = charge(
        state.car, state.soc, spec.descriptor.max_power_w, at - state.last_sample_at, target, limit
    )
    return replace(
        state,
        soc=step.soc,
        power_w=step.average_power_w,
        energy_wh=state.energy_wh + step.energy_wh,
        session_energy_wh=state.session_energy_wh + step.energy_wh,
        last_sample_at=state.last_sample_at + step.elapsed_s if step.reached_target else at,
    ), step.reached_target


def _finish(spec: EvseSpec, state: EvseState, now: float, reason: StopReason) -> EvseState:
    log.info("Evse %s finished charging (%s)", state.evse_id, reason)
    delay = draw_unplug_delay(_rng(spec, state))
    return replace(
        state,
        status=S.FINISHING,
        power_w=0.0,
        stop_reason=reason,
        last_sample_at=None,
        unplug_at=now + delay,
        draws=state.draws + 1,
    )


def _unplug(state: EvseState) -> EvseState:
    """The driver leaves: the EVSE is free again (or goes into the pending maintenance)."""
    status = S.UNAVAILABLE if state.maintenance_pending else S.AVAILABLE
    if state.maintenance_pending:
        log.info("Evse %s is in status maintenance", state.evse_id)
    return replace(
        state,
        status=status,
        maintenance=state.maintenance_pending,
        maintenance_pending=False,
        soc=None,
        car=None,
        power_w=0.0,
        session_id=None,
        session_energy_wh=0.0,
        target_soc=None,
        stop_reason=None,
        unplug_at=None,
    )
