"""Listeners of EVSE events, and the one actor that hosts them: :class:`ListenerHost`.

A listener is plain logic (Mopidy style: every method is a no-op by default, override what
you need): the live feed to browsers, the storage recorders, a test's watcher. It never
runs on an EVSE actor's thread. A :class:`ListenerHost` actor runs a list of listeners,
each event handed to each listener in order, on the host's own thread, so a slow listener
slows its host, never an EVSE actor. The CSMS runs four hosts: the read model and the live
feed (what people see must not wait for a disk), the session recorder (a session's row must
not wait behind bulk writes), the coalescing recorders (states, metric samples), and the
alert log (:mod:`actors.alert_log`).

One mechanism drives every listener's writes:

- **batch_done()** after each hand-over: the EVSE actors queue their changes in the host's
  shared :class:`~actors.inbox.BatchInbox`, and the host takes a whole burst at once, so a
  listener that writes can write a burst together (one transaction instead of one per
  change);
- **tick()** every ``tick_s`` on the clock's timers (only for hosts with a listener that
  overrides it): what a listener writes at most every so often (coalesced states, metric
  samples) goes out on a tick.

An :class:`~actors.acks.AppliedLatch` told to a host is released when its turn comes, that is
after the ``batch_done()`` of everything told before it (how the session recorder's write
gates the broker's acknowledgement: :mod:`actors.acks`). Listener errors are logged and cost
only the event that raised.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pykka

from actors.acks import AppliedLatch
from actors.clock import Scheduler, TimerHandle
from actors.inbox import LeanThreadingActor
from actors.messages import (
    EvseChanged,
    EvseChangedBatch,
    InboundReady,
    OperatorAlert,
    StationChanged,
)
from actors.scheduling import run_as_batch_thread

__all__ = ["EvseListener", "ListenerHost", "Tick"]

log = logging.getLogger(__name__)


class EvseListener:
    """Override what you need; every method is called on the host actor's thread."""

    def started(self) -> None:
        """The host started, before any event."""

    def evse_changed(self, event: EvseChanged) -> None:
        """An EVSE's state changed."""

    def station_changed(self, event: StationChanged) -> None:
        """A station came online or went offline."""

    def operator_alert(self, alert: OperatorAlert) -> None:
        """Something an operator must see."""

    def batch_done(self) -> None:
        """Every event of one hand-over (a burst, or a single event) has been handed over."""

    def tick(self) -> None:
        """The host's periodic turn: write what is due."""

    def stopped(self) -> None:
        """The host is stopping (after the events queued before the stop): flush now."""


@dataclass(frozen=True, slots=True)
class Tick:
    """Told to a host by its timer every ``tick_s``."""


def _ticks(listener: EvseListener) -> bool:
    return type(listener).tick is not EvseListener.tick


class ListenerHost(LeanThreadingActor):
    """Runs ``listeners`` on one thread: events in order, ``batch_done`` per hand-over,
    ``tick`` every ``tick_s`` (with ``timers``, and only if one of them ticks)."""

    def __init__(
        self,
        listeners: Sequence[EvseListener],
        *,
        timers: Scheduler | None = None,
        tick_s: float = 0.25,
        name: str = "listeners",
    ) -> None:
        super().__init__()
        self.listeners = tuple(listeners)
        self.name = name
        self._timers = timers if any(map(_ticks, self.listeners)) else None
        self._tick_s = tick_s
        self._next_tick: TimerHandle | None = None

    def __repr__(self) -> str:
        return f"ListenerHost({self.name}, {len(self.listeners)} listeners)"

    def on_start(self) -> None:
        run_as_batch_thread()  # woken for every burst (actors.scheduling)
        for listener in self.listeners:
            self._call(listener.started)
        self._schedule_tick()

    def on_stop(self) -> None:
        if self._next_tick is not None:
            self._next_tick.cancel()
        for listener in self.listeners:
            self._call(listener.stopped)

    def on_receive(self, message: Any) -> None:
        match message:
            case InboundReady(inbox=inbox):  # the EVSE actors' shared inbox: one burst
                self._take(inbox.take())
            case AppliedLatch():  # what came before it is written
                message.release()
            case Tick():
                for listener in self.listeners:
                    self._call(listener.tick)
                self._schedule_tick()
            case _:
                self._dispatch(message)
                self._batch_done()

    def _take(self, items: list[Any]) -> None:
        """A burst from many EVSE actors, in the order they queued it: one ``batch_done``
        for all of it (one write), except that a latch is released only after the write
        of what came before it."""
        unwritten = False
        for item in items:
            if isinstance(item, AppliedLatch):
                if unwritten:
                    self._batch_done()
                    unwritten = False
                item.release()
            else:
                self._dispatch(item)
                unwritten = True
        if unwritten:
            self._batch_done()

    def _dispatch(self, message: Any) -> None:
        if isinstance(message, EvseChangedBatch):
            for event in message.events:
                self._event(event)
        else:
            self._event(message)

    def _event(self, message: Any) -> None:
        for listener in self.listeners:  # one failing listener must not cost the others
            try:
                match message:
                    case EvseChanged():
                        listener.evse_changed(message)
                    case StationChanged():
                        listener.station_changed(message)
                    case OperatorAlert():
                        listener.operator_alert(message)
                    case _:
                        log.warning("%r: unexpected message %r", self, message)
                        return
            except Exception:
                log.exception("listener %r failed on %s", listener, type(message).__name__)

    def _batch_done(self) -> None:
        for listener in self.listeners:
            self._call(listener.batch_done)

    def _call(self, method: Any) -> None:
        try:
            method()
        except Exception:
            log.exception("listener %s failed", getattr(method, "__qualname__", method))

    def _schedule_tick(self) -> None:
        if self._timers is None:
            return
        ref = self.actor_ref

        def tell_tick() -> None:  # on the timer thread: only a tell
            with contextlib.suppress(pykka.ActorDeadError):
                ref.tell(Tick())

        self._next_tick = self._timers.call_later(self._tick_s, tell_tick)
