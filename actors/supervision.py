"""The supervisor's bookkeeping, apart from its actor: one slot per EVSE and the restart policy.

One-for-one: an EVSE actor that dies of an exception is started again from its last known
state; more than ``max_restarts`` within ``window_s`` and the supervisor gives up on it: the
EVSE is marked ``Faulted`` (:func:`faulted`) and an operator alert goes out. Its neighbours
never notice either way. Plain logic on the supervisor's thread, driven by the CSMS's clock.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pykka

from actors.clock import Scheduler
from actors.evse import EvseActor
from actors.evse_state import EvseState
from actors.evse_transition import MarkFaulted, StationWentOffline, transition
from actors.inbox import BatchInbox
from actors.metrics import RestartCounter
from actors.state_recorder import LastKnownEvse
from protocol import CommandName, CorrelationId, EvseStatus, StationDescriptor, StationId

__all__ = ["EvseSlot", "EvseWiring", "RestartPolicy", "StationBook", "restored"]


@dataclass
class EvseSlot:
    """What the supervisor keeps per EVSE: its last known state and its live actor."""

    state: EvseState
    ref: pykka.ActorRef[Any] | None = None
    restarts: collections.deque[float] = field(default_factory=collections.deque)
    """When it was restarted within the policy's window (monotonic seconds)."""
    given_up: bool = False
    reconcile: bool = False
    """Rebuilt from storage: ask the station for its ``info`` after its next birth."""


class RestartPolicy:
    """At most ``max_restarts`` restarts per EVSE within ``window_s``."""

    def __init__(
        self,
        max_restarts: int,
        window_s: float,
        monotonic: Callable[[], float],
        counter: RestartCounter | None = None,
    ) -> None:
        self.max_restarts = max_restarts
        self.window_s = window_s
        self._monotonic = monotonic
        self._counter = counter
        self.count = 0

    def may_restart(self, slot: EvseSlot) -> bool:
        """Whether the slot's actor may start again; counts the restart if so."""
        now = self._monotonic()
        while slot.restarts and now - slot.restarts[0] > self.window_s:
            slot.restarts.popleft()
        if len(slot.restarts) >= self.max_restarts:
            return False
        slot.restarts.append(now)
        self.count += 1
        if self._counter is not None:
            self._counter.record()
        return True

    def faulted(self, last_state: EvseState, error: str) -> tuple[EvseState, str]:
        """The EVSE given up on: marked ``Faulted``, and why (for the operator)."""
        state, _ = transition(last_state, MarkFaulted(reason=error))
        message = (
            f"EVSE {last_state.evse_id} crashed {self.max_restarts + 1} times within "
            f"{self.window_s:.0f} s and is marked {EvseStatus.FAULTED}: {error}"
        )
        return state, message


def restored(known: LastKnownEvse) -> EvseState:
    """A stored EVSE as the CSMS starts again from it: ``Offline`` (unknown) until its station
    speaks, so any status it then reports is legal, and its session (if any) stays open
    through ``status_before_offline``."""
    state, _ = transition(known.state, StationWentOffline(ts=known.state.ts))
    return state


class EvseWiring:
    """How the supervisor starts each EVSE actor: what it is connected to.

    Every EVSE actor queues its events for a listener in one shared
    :class:`~actors.inbox.BatchInbox` per listener, so a listener wakes once per burst
    (:mod:`actors.inbox`), not once per EVSE actor; the supervisor hears of status and
    session changes through its own (``supervisor``).
    """

    def __init__(
        self,
        *,
        supervisor: pykka.ActorRef[Any],
        bridge: pykka.ActorRef[Any] | None,
        subscribers: Sequence[pykka.ActorRef[Any]],
        status_subscribers: Sequence[pykka.ActorRef[Any]],
        alert_subscribers: Sequence[pykka.ActorRef[Any]],
        session_writer: pykka.ActorRef[Any] | None,
        timers: Scheduler | None,
        clock_ms: Callable[[], int],
        correlation_ids: Callable[[], CorrelationId],
        observe_command: Callable[[CommandName, float | None], None] | None,
    ) -> None:
        self._feeds = [BatchInbox(subscriber) for subscriber in subscribers]
        self._status_feeds = [BatchInbox(subscriber) for subscriber in status_subscribers]
        self._alert_feeds = [BatchInbox(subscriber) for subscriber in alert_subscribers]
        self._writer_feed = next(
            (f for f, s in zip(self._feeds, subscribers, strict=True) if s is session_writer),
            BatchInbox(session_writer) if session_writer is not None else None,
        )
        self._own_feed = BatchInbox(supervisor)
        self._bridge = bridge
        self._timers = timers
        self._clock_ms = clock_ms
        self._correlation_ids = correlation_ids
        self._observe_command = observe_command

    def start(self, state: EvseState) -> pykka.ActorRef[Any]:
        return EvseActor.start(
            state,
            bridge=self._bridge,
            supervisor=self._own_feed,
            subscribers=self._feeds,
            status_subscribers=self._status_feeds,
            alert_subscribers=self._alert_feeds,
            timers=self._timers,
            clock_ms=self._clock_ms,
            correlation_ids=self._correlation_ids,
            observe_command=self._observe_command,
            session_writer=self._writer_feed,
        )


_MAX_EARLY_REPORTS = 256
_MAX_REFUSED = 10_000


class StationBook:
    """The stations the supervisor knows (by their last birth), the reports that came before
    a station's first birth (parked, bounded), and the protocol versions already refused."""

    def __init__(self) -> None:
        self._stations: dict[StationId, StationDescriptor] = {}
        self._early: dict[StationId, list[Any]] = {}
        self._refused: set[tuple[StationId, str]] = set()

    def get(self, station_id: StationId) -> StationDescriptor | None:
        return self._stations.get(station_id)

    def remember(self, station: StationDescriptor) -> StationDescriptor | None:
        """Keep ``station``; the descriptor it replaces, if any."""
        known = self._stations.get(station.id)
        self._stations[station.id] = station
        return known

    def park(self, station_id: StationId, report: Any) -> bool:
        """Park a report of a station not announced yet (``False``: the station is known).
        A parked report is acknowledged with its batch: the station's retained birth and
        next reports supersede it."""
        if station_id in self._stations:
            return False
        early = self._early.setdefault(station_id, [])
        if len(early) < _MAX_EARLY_REPORTS:
            early.append(report)
        return True

    def unpark(self, station_id: StationId) -> list[Any]:
        return self._early.pop(station_id, [])

    def first_refusal(self, station_id: StationId, version: object) -> bool:
        """Whether this station's ``version`` is refused for the first time (told once)."""
        key = (station_id, repr(version))
        if key in self._refused:
            return False
        if len(self._refused) < _MAX_REFUSED:
            self._refused.add(key)
        return True
