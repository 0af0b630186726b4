"""SupervisorActor: births, offline notices and unknown EVSEs; starts and restarts EVSE actors.

Runs on its own thread, off the hot path: the ingest router (:mod:`actors.routing`)
sends an EVSE's reports straight to its actor; the supervisor gets births, offline
notices and messages for EVSEs it does not know yet, starts each EVSE's actor
(a :class:`~actors.evse.EvseActor`, one Pykka actor per EVSE), tells the listeners of
station changes (the read model follows them: :class:`~actors.fleet_view.FleetViewWriter`)
and restarts what crashes. Each EVSE actor tells it of status and session changes, so a
rebuilt actor starts from the last one.

Restart policy (one-for-one, :mod:`actors.supervision`): an EVSE actor that dies of an
exception is started again from its last known state; more than ``max_restarts`` within
``restart_window_s`` and the EVSE is marked Faulted with an operator alert.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import pykka

from actors.acks import AppliedLatch
from actors.clock import Scheduler
from actors.evse import RetireEvse, new_correlation_id
from actors.evse_state import EvseState
from actors.inbox import LeanThreadingActor
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
from actors.supervision import EvseSlot, EvseWiring, RestartPolicy, StationBook, restored
from protocol import (
    CommandName,
    CommandReply,
    CorrelationId,
    EvseId,
    InfoArgs,
    MeterValues,
    StationBirth,
    StationDescriptor,
    StationId,
    StationOffline,
    StatusReport,
    evse_key,
)
from storage.errors import ActorUnavailableError, UnknownEvseError

__all__ = ["SupervisorActor"]

log = logging.getLogger(__name__)


def _wall_ms() -> int:
    return int(time.time() * 1000)


class SupervisorActor(LeanThreadingActor):
    """Owns every EVSE actor; see the module docstring for the restart policy."""

    def __init__(
        self,
        *,
        bridge: pykka.ActorRef[Any] | None,
        subscribers: Sequence[pykka.ActorRef[Any]] = (),
        status_subscribers: Sequence[pykka.ActorRef[Any]] = (),
        alert_subscribers: Sequence[pykka.ActorRef[Any]] = (),
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
        ``timers``, ``monotonic``, ``clock_ms``: the CSMS's clock (:mod:`actors.clock`);
        ``restarts``: counts restarts for the metrics; ``last_known``: the stored states to
        rebuild the EVSE actors from (:meth:`on_start`), whose ``info`` round trips
        ``reconcile_timeout_s`` bounds; ``session_writer``: the listener host after whose
        write a batch that opens or closes a session counts as applied (:mod:`actors.acks`);
        ``alert_subscribers`` hear of alerts and stations, never of an EVSE's changes."""
        super().__init__()
        self._registry = registry
        self._wiring = EvseWiring(
            supervisor=self.actor_ref,
            bridge=bridge,
            subscribers=subscribers,
            status_subscribers=status_subscribers,
            alert_subscribers=alert_subscribers,
            session_writer=session_writer,
            timers=timers,
            clock_ms=clock_ms,
            correlation_ids=correlation_ids,
            observe_command=observe_command,
        )
        self._outbox = EvseOutbox()
        self._last_known = tuple(last_known)
        self._reconcile_timeout_s = reconcile_timeout_s
        self._subscribers = [*subscribers, *status_subscribers, *alert_subscribers]
        """Told of station changes and alerts, and of an EVSE given up (all of them)."""
        self._policy = RestartPolicy(max_restarts, restart_window_s, monotonic, restarts)
        self._stations = StationBook()
        self._slots: dict[EvseId, EvseSlot] = {}
        self._clock_ms = clock_ms

    # ------------------------------------------------------------------ messages

    def on_start(self) -> None:
        """Runs on the supervisor's thread before any message: rebuild the last known fleet.

        Every stored EVSE gets its actor back, ``Offline`` until its station speaks
        (:func:`~actors.supervision.restored`; the read model was seeded with the same).
        Reports queued by the broker while the CSMS was down apply in order on top (their
        ``seq`` is above the stored one; meter values wait for a status); the retained birth
        resets the floor so the station's latest status wins; after that birth each rebuilt
        EVSE does an ``info`` round trip, whose reply goes through the transition like any
        reply (a session that ended meanwhile is closed with the station's energy).
        """
        if self._registry is not None:
            self._registry.supervisor = self.actor_ref
        for known in self._last_known:
            station = known.station
            state = restored(known)
            if station is not None and self._stations.get(station.id) is None:
                self._stations.remember(station)
            slot = self._slots[state.evse_id] = EvseSlot(state=state, reconcile=True)
            self._start(slot)
        if self._last_known:
            log.info("Rebuilt %d EVSE actors from their last known state", len(self._slots))
        self._last_known = ()
        self._outbox.flush()

    def on_receive(self, message: Any) -> Any:
        """Runs on the supervisor's thread."""
        try:
            match message:
                case InboundReady(inbox=inbox):  # the router's and the EVSE actors' feed
                    for inbound in inbox.take():
                        if isinstance(inbound, AppliedLatch):
                            self._outbox.pass_latch(inbound)
                        else:
                            self._route_safely(inbound)
                case Inbound(message=inbound):
                    self._route_safely(inbound)
                case GetEvseRef(evse_id=evse_id):
                    return self._live_ref(evse_id)
                case _:
                    self._route_safely(message)
        finally:
            self._outbox.flush()
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

    def _to_actor(self, slot: EvseSlot, item: Any) -> None:
        """Queue ``item`` for the slot's actor (the outbox sends each actor its batch). An
        actor that died meanwhile drops it (as a dead Pykka actor's queued messages are), and
        one given up on has none: the station reports again."""
        if slot.ref is not None:
            self._outbox.put(slot.state.evse_id, slot.ref, item)

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
            self._outbox.flush()
            held = registry.take_held(sid)
            if not held:
                return
            for item in held:
                if isinstance(item, AppliedLatch):
                    self._outbox.pass_latch(item)
                else:
                    self._route_safely(item)
            self._outbox.flush()

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
            case EvseChangedBatch(events=events):  # from the EVSE actors
                for event in events:
                    self._remember(event.state)
            case EvseChanged(state=state):
                self._remember(state)
            case EvseCrashed() as crash:
                self._on_crash(crash)
            case (
                MeterValues(station_id=sid, evse_id=evse_id)
                | CommandReply(station_id=sid, evse_id=evse_id)
            ):
                self._to_evse(sid, evse_id, inbound)
            case _:
                log.warning("Supervisor: unexpected message %r", type(inbound).__name__)

    def _on_birth(self, birth: StationBirth, station: StationDescriptor) -> None:
        known = self._stations.remember(station)
        if known is not None:
            self._retire_missing(known, station)
        for evse in station.evses:
            key = evse_key(station.id, evse.id)
            slot = self._slots.get(key)
            if slot is None:
                state = EvseState(station_id=station.id, descriptor=evse)
                slot = self._slots[key] = EvseSlot(state=state)
                self._start(slot)
            self._to_actor(slot, birth)
            if slot.reconcile:
                slot.reconcile = False
                self._ask_info(slot)
        self._broadcast(StationChanged(station=station, online=True, ts=birth.ts))
        if known is None:
            log.info("Station %s announced itself with %d EVSEs", station.id, len(station.evses))
        for early in self._stations.unpark(station.id):
            self._route(early)
        self._release(station.id)

    def _refuse_version(self, refused: VersionRefused) -> None:
        """A station speaking another protocol version: told once per station and version."""
        sid = refused.station_id
        if not self._stations.first_refusal(sid, refused.version):
            return
        log.error("Refusing station %s: %s", sid, refused.why)
        self._alert("protocol_version", f"Station {sid} was refused: {refused.why}", sid)

    def _ask_info(self, slot: EvseSlot) -> None:
        """Fire and forget: nobody waits on the future; the reply's info is what counts."""
        reply: pykka.Future[Any] = pykka.ThreadingFuture()
        info = SendCommand(args=InfoArgs(), reply=reply)
        self._to_actor(slot, replace(info, timeout_s=self._reconcile_timeout_s))

    def _retire_missing(self, before: StationDescriptor, now: StationDescriptor) -> None:
        """EVSEs a station no longer lists are retired: their actor stops, the read model
        forgets them (the API answers 404) and commands to them are refused."""
        kept = {e.id for e in now.evses}
        for key in (evse_key(before.id, e.id) for e in before.evses if e.id not in kept):
            slot = self._slots.pop(key, None)
            if slot is None:
                continue
            self._to_actor(slot, RetireEvse())
            if self._registry is not None:
                self._registry.remove(key)
            message = f"EVSE {key} is no longer announced by its station: retired"
            log.info(message)
            self._alert("evse_retired", message, now.id, key)

    def _on_offline(self, offline: StationOffline, sid: StationId) -> None:
        station = self._stations.get(sid)
        if station is None:
            self._release(sid)
            return
        for evse in station.evses:
            slot = self._slots.get(evse_key(sid, evse.id))
            if slot is not None:
                self._to_actor(slot, offline)
        self._broadcast(StationChanged(station=station, online=False, ts=offline.ts))
        self._alert("station_offline", f"Station {sid} is offline ({offline.reason})", sid)
        self._release(sid)

    def _to_evse(self, sid: StationId, evse_id: EvseId, inbound: Any) -> None:
        try:
            if self._stations.park(sid, inbound):
                return
            slot = self._slots.get(evse_key(sid, evse_id))
            if slot is None:
                log.warning("Station %s reported on unannounced EVSE %s", sid, evse_id)
                return
            self._to_actor(slot, inbound)
        finally:
            self._release(sid)  # the router held the station's next messages behind this one

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

    def _alert(self, kind: str, message: str, sid: StationId, evse: EvseId | None = None) -> None:
        at = self._clock_ms()
        self._broadcast(
            OperatorAlert(kind=kind, message=message, ts=at, station_id=sid, evse_id=evse)
        )

    def _broadcast(self, event: Any) -> None:
        for subscriber in list(self._subscribers):
            try:
                subscriber.tell(event)
            except pykka.ActorDeadError:
                self._subscribers.remove(subscriber)

    # ------------------------------------------------------------------ supervision

    def _start(self, slot: EvseSlot) -> None:
        slot.ref = self._wiring.start(slot.state)
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

    def _restart(self, slot: EvseSlot, last_state: EvseState, error: str) -> None:
        evse_id = last_state.evse_id
        if not self._policy.may_restart(slot):
            self._give_up(slot, last_state, error)
            return
        slot.state = last_state
        self._start(slot)
        log.warning(
            "EVSE actor %s restarted from its last known state (%s)", evse_id, last_state.status
        )
        message = f"EVSE {evse_id} restarted after: {error}"
        self._alert("actor_restarted", message, last_state.station_id, evse_id)

    def _give_up(self, slot: EvseSlot, last_state: EvseState, error: str) -> None:
        slot.given_up = True
        slot.ref = None
        if self._registry is not None:
            self._registry.remove(last_state.evse_id)
        slot.state, message = self._policy.faulted(last_state, error)
        log.error(message)
        self._broadcast(EvseChanged(state=slot.state, effects=(), alert=message))
        self._alert("evse_faulted", message, last_state.station_id, last_state.evse_id)

    @property
    def restart_count(self) -> int:
        return self._policy.count
