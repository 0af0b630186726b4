"""SupervisorActor: owns the fleet registry, routes station messages, restarts EVSE actors.

Runs on its own thread, off the hot path: the ingest router (:mod:`actors.routing`)
sends an EVSE's reports straight to its actor; the supervisor gets births, offline
notices and messages for EVSEs it does not know yet, starts each EVSE's actor
(a :class:`~actors.evse.EvseActor`, one Pykka actor per EVSE), tells the listeners of
station changes (the read model follows them: :class:`~actors.fleet_view.FleetViewWriter`)
and restarts what crashes. Each EVSE actor tells it of status and session changes, so a
rebuilt actor starts from the last one.

Restart policy (one-for-one): an EVSE actor that dies of an exception is started
again from its last known state; more than ``max_restarts`` within
``restart_window_s`` and the supervisor gives up: the EVSE is marked Faulted and
an :class:`OperatorAlert` goes out. Its neighbours never notice either way.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pykka

from actors.acks import AppliedLatch
from actors.clock import Scheduler
from actors.evse import EvseActor, RetireEvse, new_correlation_id
from actors.evse_state import EvseState
from actors.evse_transition import MarkFaulted, StationWentOffline, transition
from actors.inbox import BatchInbox
from actors.messages import (
    EvseChanged,
    EvseChangedBatch,
    EvseCrashed,
    GetEvseRef,
    Inbound,
    InboundReady,
    OperatorAlert,
    SendCommand,
    StationChanged,
    VersionRefused,
)
from actors.metrics import RestartCounter
from actors.outbox import EvseOutbox
from actors.routing import EvseRegistry
from actors.state_recorder import LastKnownEvse
from protocol import (
    CommandName,
    CommandReply,
    CorrelationId,
    EvseId,
    EvseStatus,
    MeterValues,
    StationBirth,
    StationDescriptor,
    StationId,
    StationOffline,
    StatusReport,
    evse_key,
)
from storage.errors import ActorUnavailableError, UnknownEvseError

__all__ = ["SupervisorActor", "restored"]

log = logging.getLogger(__name__)

_MAX_EARLY_REPORTS = 256
_MAX_REFUSED = 10_000


def _wall_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class _Slot:
    state: EvseState
    ref: pykka.ActorRef[Any] | None = None
    restarts: collections.deque[float] = field(default_factory=collections.deque)
    given_up: bool = False
    reconcile: bool = False
    """Rebuilt from storage: ask the station for its ``info`` after its next birth."""


class SupervisorActor(pykka.ThreadingActor):
    """Owns every EVSE actor; see the module docstring for the restart policy."""

    def __init__(
        self,
        *,
        bridge: pykka.ActorRef[Any] | None,
        subscribers: Sequence[pykka.ActorRef[Any]] = (),
        status_subscribers: Sequence[pykka.ActorRef[Any]] = (),
        timers: Scheduler | None = None,
        max_restarts: int = 3,
        restart_window_s: float = 60.0,
        correlation_ids: Callable[[], CorrelationId] = new_correlation_id,
        monotonic: Callable[[], float] = time.monotonic,
        observe_command: Callable[[CommandName, float | None], None] | None = None,
        last_known: Sequence[LastKnownEvse] = (),
        reconcile_timeout_s: float = 10.0,
        session_writer: pykka.ActorRef[Any] | None = None,
        registry: EvseRegistry | None = None,
        clock_ms: Callable[[], int] = _wall_ms,
        restarts: RestartCounter | None = None,
    ) -> None:
        """``registry``: where it publishes each EVSE's live actor (and itself), read by the
        ingest router and the gateway without an ``ask`` (:mod:`actors.routing`);
        ``timers``, ``monotonic`` and ``clock_ms``: the CSMS's clock (:mod:`actors.clock`),
        also handed to every EVSE actor; ``restarts``: counts restarts for the metrics;
        ``last_known``:
        the stored states to rebuild the EVSE actors from (see :meth:`on_start`);
        ``reconcile_timeout_s`` bounds their ``info`` round trips;
        ``session_writer``: the subscriber that writes session rows, after whose write a
        batch that opens or closes a session counts as applied (:mod:`actors.acks`)."""
        super().__init__()
        self._registry = registry
        # Every EVSE actor queues its events for a subscriber in one shared inbox, so the
        # subscriber wakes once per burst (actors.inbox), not once per EVSE actor.
        self._feeds = [BatchInbox(subscriber) for subscriber in subscribers]
        self._status_feeds = [BatchInbox(subscriber) for subscriber in status_subscribers]
        self._writer_feed = next(
            (f for f, s in zip(self._feeds, subscribers, strict=True) if s is session_writer),
            BatchInbox(session_writer) if session_writer is not None else None,
        )
        self._own_feed = BatchInbox(self.actor_ref)
        self._outbox = EvseOutbox()
        self._last_known = tuple(last_known)
        self._reconcile_timeout_s = reconcile_timeout_s
        self._bridge = bridge
        self._subscribers = [*subscribers, *status_subscribers]
        """Told of station changes and alerts, and of an EVSE given up (all of them)."""
        self._timers = timers
        self._max_restarts = max_restarts
        self._window = restart_window_s
        self._correlation_ids = correlation_ids
        self._monotonic = monotonic
        self._observe_command = observe_command  # handed to every EVSE actor (metrics)
        self._stations: dict[StationId, StationDescriptor] = {}
        self._slots: dict[EvseId, _Slot] = {}
        self._early: dict[StationId, list[Any]] = {}
        self._refused: set[tuple[StationId, str]] = set()
        self._clock_ms = clock_ms
        self._restarts = restarts
        self.restart_count = 0

    # ------------------------------------------------------------------ messages

    def on_start(self) -> None:
        """Runs on the supervisor's thread before any message: rebuild the last known fleet.

        Every stored EVSE gets its actor back, ``Offline`` (unknown) like its station until the
        station speaks (:func:`restored`; the composition root seeded the read model with the
        same). Status reports queued by the
        broker while the CSMS was down then apply in order on top of the stored state (their
        ``seq`` is above the stored one; meter values wait for a status); the retained birth
        resets the floor so the station's latest status wins; and after that birth each
        rebuilt EVSE does an ``info`` round trip, whose reply goes through the transition
        like any reply (so a session that ended meanwhile is closed with the station's
        energy, and a running one gets the station's count).
        """
        if self._registry is not None:
            self._registry.supervisor = self.actor_ref
        for known in self._last_known:
            station = known.station
            state = restored(known)
            if station is not None and station.id not in self._stations:
                self._stations[station.id] = station
            slot = self._slots[state.evse_id] = _Slot(state=state, reconcile=True)
            self._start(slot)
        if self._last_known:
            log.info("Rebuilt %d EVSE actors from their last known state", len(self._slots))
        self._last_known = ()
        self._flush()

    def on_receive(self, message: Any) -> Any:
        """Runs on the supervisor's thread."""
        try:
            match message:
                case InboundReady(inbox=inbox):
                    for inbound in inbox.take():
                        if isinstance(inbound, AppliedLatch):
                            self._pass_latch(inbound)
                        else:
                            self._route_safely(inbound)
                case Inbound(message=inbound):
                    self._route_safely(inbound)
                case EvseChangedBatch(events=events):
                    for event in events:
                        self._remember(event.state)
                case EvseChanged(state=state):
                    self._remember(state)
                case EvseCrashed() as crash:
                    self._on_crash(crash)
                case GetEvseRef(evse_id=evse_id):
                    return self._live_ref(evse_id)
                case _:
                    log.warning("Supervisor: unexpected message %r", message)
        finally:
            self._flush()
        return None

    def on_stop(self) -> None:
        if self._registry is not None and self._registry.supervisor is self.actor_ref:
            self._registry.supervisor = None
        stopping = []
        for slot in self._slots.values():
            if slot.ref is not None:
                with contextlib.suppress(pykka.ActorDeadError):
                    stopping.append(slot.ref.stop(block=False))
        for future in stopping:
            try:
                future.get(timeout=5)
            except (pykka.ActorDeadError, pykka.Timeout):
                log.warning("an EVSE actor did not stop in time")

    # ------------------------------------------------------------------ EVSE actors

    def _start_actor(self, state: EvseState) -> pykka.ActorRef[Any]:
        return EvseActor.start(
            state,
            bridge=self._bridge,
            supervisor=self._own_feed,
            subscribers=self._feeds,
            status_subscribers=self._status_feeds,
            timers=self._timers,
            clock_ms=self._clock_ms,
            correlation_ids=self._correlation_ids,
            observe_command=self._observe_command,
            session_writer=self._writer_feed,
        )

    def _to_actor(self, slot: _Slot, item: Any) -> None:
        """Queue ``item`` for the slot's actor; :meth:`_flush` sends each actor its batch."""
        if slot.ref is not None:
            self._outbox.put(slot.state.evse_id, slot.ref, item)

    def _flush(self) -> None:
        self._outbox.flush()

    def _pass_latch(self, latch: AppliedLatch) -> None:
        """Reports parked until their station's birth (``_early``) are acknowledged with
        their batch: the station's retained birth and next reports supersede them."""
        self._outbox.pass_latch(latch)

    # ------------------------------------------------------------------ routing

    def _route_safely(self, inbound: Any) -> None:
        """One bad message must not take the supervisor (and the fleet) down."""
        try:
            self._route(inbound)
        except Exception:
            log.exception("Supervisor: failed to route %s; dropped", type(inbound).__name__)
            if isinstance(inbound, StationBirth):
                self._release(inbound.station.id)  # never leave its station held
            elif isinstance(inbound, StationOffline):
                self._release(inbound.station_id)

    def _release(self, sid: StationId) -> None:
        """The station's birth or offline is applied: what it implies goes to the actors
        now, then the messages the router held behind it, in order (:mod:`actors.routing`)."""
        registry = self._registry
        if registry is None:
            return
        with registry.lock:
            self._flush()
            held = registry.take_held(sid)
            if not held:
                return
            for item in held:
                if isinstance(item, AppliedLatch):
                    self._pass_latch(item)
                else:
                    self._route_safely(item)
            self._flush()

    def _route(self, inbound: Any) -> None:
        match inbound:
            case StationBirth(station=station):
                self._on_birth(inbound, station)
            case StationOffline(station_id=sid):
                self._on_offline(inbound, sid)
            case StatusReport(station_id=sid, info=info):
                self._to_evse(sid, info.evse_id, inbound)
            case VersionRefused() as refused:
                self._refuse_version(refused)
            case EvseChangedBatch(events=events):  # from the EVSE actors' shared inbox
                for event in events:
                    self._remember(event.state)
            case EvseCrashed() as crash:
                self._on_crash(crash)
            case (
                MeterValues(station_id=sid, evse_id=evse_id)
                | CommandReply(station_id=sid, evse_id=evse_id)
            ):
                self._to_evse(sid, evse_id, inbound)
            case _:
                log.debug("Supervisor: ignoring %s", type(inbound).__name__)

    def _on_birth(self, birth: StationBirth, station: StationDescriptor) -> None:
        known = self._stations.get(station.id)
        self._stations[station.id] = station
        if known is not None:
            self._retire_missing(known, station)
        for evse in station.evses:
            key = evse_key(station.id, evse.id)
            slot = self._slots.get(key)
            if slot is None:
                state = EvseState(station_id=station.id, descriptor=evse)
                slot = self._slots[key] = _Slot(state=state)
                self._start(slot)
            self._deliver(slot, birth)
            if slot.reconcile:
                slot.reconcile = False
                self._ask_info(slot)
        self._broadcast(StationChanged(station=station, online=True, ts=birth.ts))
        if known is None:
            log.info("Station %s announced itself with %d EVSEs", station.id, len(station.evses))
        for early in self._early.pop(station.id, []):
            self._route(early)
        self._release(station.id)

    def _refuse_version(self, refused: VersionRefused) -> None:
        """A station speaking another protocol version: told once per station and version."""
        key = (refused.station_id, repr(refused.version))
        if key in self._refused:
            return
        if len(self._refused) < _MAX_REFUSED:
            self._refused.add(key)
        log.error("Refusing station %s: %s", refused.station_id, refused.why)
        self._broadcast(
            OperatorAlert(
                kind="protocol_version",
                station_id=refused.station_id,
                ts=self._clock_ms(),
                message=f"Station {refused.station_id} was refused: {refused.why}",
            )
        )

    def _ask_info(self, slot: _Slot) -> None:
        """Fire and forget: nobody waits on the future; the reply's info is what counts."""
        if slot.ref is None or slot.given_up:
            return
        command = SendCommand(
            command=CommandName.INFO,
            args=None,
            reply=pykka.ThreadingFuture(),
            timeout_s=self._reconcile_timeout_s,
        )
        self._to_actor(slot, command)

    def _retire_missing(self, before: StationDescriptor, now: StationDescriptor) -> None:
        """EVSEs a station no longer lists are retired: their actor stops, the read model
        forgets them (the API answers 404) and commands to them are refused."""
        kept = {e.id for e in now.evses}
        for evse in before.evses:
            if evse.id in kept:
                continue
            key = evse_key(before.id, evse.id)
            slot = self._slots.pop(key, None)
            if slot is None:
                continue
            self._to_actor(slot, RetireEvse())
            if self._registry is not None:
                self._registry.remove(key)
            log.info("Station %s no longer has EVSE %s: retired", now.id, evse.id)
            self._broadcast(
                OperatorAlert(
                    kind="evse_retired",
                    station_id=now.id,
                    evse_id=key,
                    ts=self._clock_ms(),
                    message=f"EVSE {key} is no longer announced by its station: retired",
                )
            )

    def _on_offline(self, offline: StationOffline, sid: StationId) -> None:
        station = self._stations.get(sid)
        if station is None:
            self._release(sid)
            return
        for evse in station.evses:
            slot = self._slots.get(evse_key(sid, evse.id))
            if slot is not None:
                self._deliver(slot, offline)
        self._broadcast(StationChanged(station=station, online=False, ts=offline.ts))
        self._broadcast(
            OperatorAlert(
                kind="station_offline",
                station_id=sid,
                ts=offline.ts,
                message=f"Station {sid} is offline ({offline.reason})",
            )
        )
        self._release(sid)

    def _to_evse(self, sid: StationId, evse_id: EvseId, inbound: Any) -> None:
        try:
            self._to_known_evse(sid, evse_id, inbound)
        finally:
            self._release(sid)  # the router held the station's next messages behind this one

    def _to_known_evse(self, sid: StationId, evse_id: EvseId, inbound: Any) -> None:
        if sid not in self._stations:
            early = self._early.setdefault(sid, [])
            if len(early) < _MAX_EARLY_REPORTS:
                early.append(inbound)
            return
        slot = self._slots.get(evse_key(sid, evse_id))
        if slot is None:
            log.warning("Station %s reported on EVSE %s that it did not announce", sid, evse_id)
            return
        self._deliver(slot, inbound)

    def _deliver(self, slot: _Slot, inbound: Any) -> None:
        """In order, through the host's next batch. An EVSE actor that died meanwhile drops
        it (as a dead Pykka actor's queued messages are); the station reports again."""
        if slot.given_up or slot.ref is None:
            return
        self._to_actor(slot, inbound)

    def _remember(self, state: EvseState) -> None:
        """The last status/session change an EVSE actor reported (it wrote the view itself)."""
        slot = self._slots.get(state.evse_id)
        if slot is None or slot.given_up:
            return
        slot.state = state

    def _live_ref(self, evse_id: EvseId) -> pykka.ActorRef[Any]:
        slot = self._slots.get(evse_id)
        if slot is None:
            raise UnknownEvseError(f"unknown EVSE {evse_id!r}")
        if slot.ref is None or not slot.ref.is_alive():
            raise ActorUnavailableError(f"EVSE {evse_id} is out of service (its actor is down)")
        return slot.ref

    def _broadcast(self, event: Any) -> None:
        for subscriber in list(self._subscribers):
            try:
                subscriber.tell(event)
            except pykka.ActorDeadError:
                self._subscribers.remove(subscriber)

    # ------------------------------------------------------------------ supervision

    def _start(self, slot: _Slot) -> None:
        slot.ref = self._start_actor(slot.state)
        if self._registry is not None:
            self._registry.put(slot.state.evse_id, slot.ref)

    def _on_crash(self, crash: EvseCrashed) -> None:
        slot = self._slots.get(crash.evse_id)
        if slot is None:
            return
        log.error("EVSE actor %s crashed: %s", crash.evse_id, crash.error)
        if slot.ref is not None and slot.ref.actor_urn != crash.actor_urn:
            return  # already restarted when a message found it dead
        self._restart(slot, crash.last_state, crash.error)

    def _restart(self, slot: _Slot, last_state: EvseState, error: str) -> None:
        now = self._monotonic()
        while slot.restarts and now - slot.restarts[0] > self._window:
            slot.restarts.popleft()
        evse_id = last_state.evse_id
        if len(slot.restarts) >= self._max_restarts:
            self._give_up(slot, last_state, error)
            return
        slot.restarts.append(now)
        slot.state = last_state
        self.restart_count += 1
        if self._restarts is not None:
            self._restarts.record()
        self._start(slot)
        log.warning(
            "EVSE actor %s restarted from its last known state (%s)", evse_id, last_state.status
        )
        self._broadcast(
            OperatorAlert(
                kind="actor_restarted",
                evse_id=evse_id,
                station_id=last_state.station_id,
                ts=self._clock_ms(),
                message=f"EVSE {evse_id} restarted after: {error}",
            )
        )

    def _give_up(self, slot: _Slot, last_state: EvseState, error: str) -> None:
        slot.given_up = True
        slot.ref = None
        if self._registry is not None:
            self._registry.remove(last_state.evse_id)
        slot.state, _ = transition(last_state, MarkFaulted(reason=error))
        message = (
            f"EVSE {last_state.evse_id} crashed {self._max_restarts + 1} times within "
            f"{self._window:.0f} s and is marked {EvseStatus.FAULTED}: {error}"
        )
        log.error(message)
        self._broadcast(EvseChanged(state=slot.state, effects=(), alert=message))
        self._broadcast(
            OperatorAlert(
                kind="evse_faulted",
                evse_id=last_state.evse_id,
                station_id=last_state.station_id,
                ts=self._clock_ms(),
                message=message,
            )
        )


def restored(known: LastKnownEvse) -> EvseState:
    """A stored EVSE as the CSMS starts again from it: ``Offline`` (unknown) until its station
    speaks, so any status it then reports is legal, and its session (if any) stays open
    through ``status_before_offline``."""
    state, _ = transition(known.state, StationWentOffline(ts=known.state.ts))
    return state
