"""The EVSE registry and the ingest router: station messages go straight to their EVSE actor.

:class:`EvseRegistry` maps an EVSE key (``station.evse``) to its live
:class:`~actors.evse.EvseActor` ref. The supervisor writes it (start, restart, retire, give
up); anyone reads it without an ``ask``: the ingest router below, and the gateway (through
:meth:`actors.system.CsmsSystem.evse_ref`).

:class:`IngestRouter` runs on the MQTT bridge's reader thread. For each parsed batch it
sends every EVSE actor one :class:`~actors.evse.EvseBatch` with that EVSE's status reports,
meter values and command replies, in arrival order. Only births, offline messages, refusals
and messages for EVSEs the registry does not know go to the supervisor (through its
:class:`~actors.inbox.BatchInbox`), which is thus off the hot path.

Order across the two paths. A birth or an offline message *holds* its station: the router
keeps that station's later messages aside (later births included) instead of sending them to
the actors, and the supervisor, once it has applied the birth or offline, releases the
station: under the lock the router takes to decide, it sends the actors what the birth
implies, then routes the held messages itself, in order (a held birth is applied right
there). So an EVSE actor never gets a report before the birth that precedes it on the wire.
Past :data:`MAX_HELD` a held station's messages go to the supervisor's inbox, behind the
birth (a station that floods while it is being born only reorders its own reports).

Acknowledgements (:mod:`actors.acks`): each actor a batch reached holds one part of the
batch's latch and releases it once it has applied its part; held messages take one part
with them, passed on by the supervisor when it releases them.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

import pykka

from actors.acks import AppliedLatch
from actors.evse import EvseBatch
from actors.inbox import BatchInbox
from protocol import (
    CommandReply,
    EvseId,
    MeterValues,
    StationBirth,
    StationId,
    StationOffline,
    StatusReport,
    evse_key,
)

__all__ = ["MAX_HELD", "EvseRegistry", "IngestRouter"]

log = logging.getLogger(__name__)

MAX_HELD = 10_000
"""Messages kept aside per held station; past this they go to the supervisor (in order)."""


class EvseRegistry:
    """EVSE key -> live EVSE actor ref, and the stations whose messages are held."""

    def __init__(self) -> None:
        self._refs: dict[EvseId, pykka.ActorRef[Any]] = {}
        self.lock = threading.RLock()
        """Taken by the router to route a message and by the supervisor to release a station."""
        self.held: dict[StationId, list[Any]] = {}
        """Station -> messages (and latches) kept aside until the supervisor releases it."""
        self.supervisor: pykka.ActorRef[Any] | None = None
        """The running supervisor (it registers itself on start, and leaves on stop): who
        says why an EVSE has no live actor (:class:`actors.commands.Commands`)."""

    def get(self, evse_id: str) -> pykka.ActorRef[Any] | None:
        """The EVSE's live actor, or ``None`` (unknown, retired, given up)."""
        return self._refs.get(EvseId(evse_id))

    def __len__(self) -> int:
        return len(self._refs)

    def put(self, evse_id: EvseId, ref: pykka.ActorRef[Any]) -> None:
        self._refs[evse_id] = ref

    def remove(self, evse_id: EvseId) -> None:
        self._refs.pop(evse_id, None)

    def take_held(self, station_id: StationId) -> list[Any]:
        """Supervisor side, with :attr:`lock` held: the station's held messages, in order;
        from now on the router sends its messages straight to the actors again."""
        return self.held.pop(station_id, [])


class IngestRouter:
    """Routes a parsed batch (see the module docstring); runs on one thread, the reader's."""

    def __init__(self, registry: EvseRegistry, supervisor: BatchInbox) -> None:
        self.registry = registry
        self.supervisor = supervisor

    def route(self, messages: Sequence[Any], latch: AppliedLatch) -> None:
        registry = self.registry
        groups: dict[EvseId, tuple[pykka.ActorRef[Any], list[Any]]] = {}
        to_supervisor: list[Any] = []
        held_now: set[StationId] = set()
        with registry.lock:
            for message in messages:
                match message:
                    case StatusReport(station_id=sid, info=info):
                        key = evse_key(sid, info.evse_id)
                    case (
                        MeterValues(station_id=sid, evse_id=evse_id)
                        | CommandReply(station_id=sid, evse_id=evse_id)
                    ):
                        key = evse_key(sid, evse_id)
                    case StationBirth(station=station):
                        self._gate(station.id, message, to_supervisor, held_now)
                        continue
                    case StationOffline(station_id=sid):
                        self._gate(sid, message, to_supervisor, held_now)
                        continue
                    case _:
                        to_supervisor.append(message)
                        continue
                waiting = registry.held.get(sid)
                if waiting is not None:
                    if len(waiting) < MAX_HELD:
                        waiting.append(message)
                        held_now.add(sid)
                    else:
                        to_supervisor.append(message)
                    continue
                ref = registry.get(key)
                if ref is None:
                    # Unknown to the registry (not born yet, or the supervisor is rebuilding the
                    # fleet): the supervisor routes it, and the station's next messages wait
                    # until it has, so none overtakes it once the EVSE is known.
                    to_supervisor.append(message)
                    registry.held.setdefault(sid, [])
                    continue
                group = groups.get(key)
                if group is None:
                    groups[key] = (ref, [message])
                else:
                    group[1].append(message)
            for sid in held_now:
                latch.hold()
                registry.held[sid].append(latch)
            # Told under the lock: a supervisor releasing a station meanwhile tells after us.
            for evse, (ref, items) in groups.items():
                latch.hold()
                items.append(latch)
                try:
                    ref.tell(EvseBatch(items=items))
                except pykka.ActorDeadError:  # restarting: dropped, left unacknowledged
                    log.warning("EVSE actor %s is down; dropped %d messages", evse, len(items) - 1)
        if not to_supervisor:
            latch.release()  # the bridge's part
            return
        try:
            self.supervisor.put_many(to_supervisor, latch)  # the bridge's part goes with them
        except pykka.ActorDeadError:
            log.error("supervisor is gone; dropping %d messages", len(to_supervisor))

    def _gate(
        self, sid: StationId, message: Any, to_supervisor: list[Any], held_now: set[StationId]
    ) -> None:
        """A birth or offline: to the supervisor, and the station's next messages held until
        it has applied it; if the station is held already, this one waits its turn too."""
        waiting = self.registry.held.get(sid)
        if waiting is None:
            self.registry.held[sid] = []
            to_supervisor.append(message)
        elif len(waiting) < MAX_HELD:
            waiting.append(message)
            held_now.add(sid)
        else:
            to_supervisor.append(message)
