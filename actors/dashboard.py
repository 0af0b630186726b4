"""Subscribers to EVSE events: the dashboard streams, tests, later SSE and storage.

Listener methods are no-ops by default (Mopidy style): a subscriber overrides
only what it needs. A :class:`DashboardSubscriber` actor receives every event by
``tell`` (EVSE changes in batches, :class:`EvseChangedBatch`) and calls its listener
once per event, in order, on the subscriber's own thread, so a slow
listener never slows an EVSE actor. After each message (a whole batch, or a single
event) it calls ``batch_done()``: a listener that writes to storage can write a batch's
changes together there (one transaction instead of one per change). An
:class:`~actors.acks.AppliedLatch` told to a subscriber is released when its turn comes,
that is after the ``batch_done()`` of every batch told before it (how the session
recorder's write gates the broker's acknowledgement: :mod:`actors.acks`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import pykka

from actors.acks import AppliedLatch
from actors.messages import (
    EvseChanged,
    EvseChangedBatch,
    InboundReady,
    OperatorAlert,
    StationChanged,
)

__all__ = ["DashboardSubscriber", "EvseListener", "ListenerTimer"]

log = logging.getLogger(__name__)


class EvseListener:
    """Override what you need; every method is called on the subscriber actor's thread."""

    def evse_changed(self, event: EvseChanged) -> None:
        """An EVSE's state changed."""

    def station_changed(self, event: StationChanged) -> None:
        """A station came online or went offline."""

    def operator_alert(self, alert: OperatorAlert) -> None:
        """Something an operator must see."""

    def attached(self, subscriber: pykka.ActorRef[Any]) -> None:
        """The subscriber started: ``subscriber`` is where a timer may ``tell`` a
        :class:`ListenerTimer` to come back to this listener on its own thread."""

    def timer_fired(self, token: object) -> None:
        """A :class:`ListenerTimer` this listener scheduled has arrived."""

    def batch_done(self) -> None:
        """Every event of one message (a batch, or a single event) has been handed over."""

    def detached(self) -> None:
        """The subscriber is stopping (after the events queued before the stop): flush now."""


@dataclass(frozen=True, slots=True)
class ListenerTimer:
    """Told to a subscriber by a listener's own timer; handed back as ``timer_fired(token)``."""

    token: object


class DashboardSubscriber(pykka.ThreadingActor):
    """Receives every EVSE change and hands it to a listener; listener errors are logged."""

    def __init__(self, listener: EvseListener) -> None:
        super().__init__()
        self.listener = listener

    def on_start(self) -> None:
        self.listener.attached(self.actor_ref)

    def on_stop(self) -> None:
        try:
            self.listener.detached()
        except Exception:
            log.exception("dashboard listener failed to detach")

    def on_receive(self, message: Any) -> None:
        if isinstance(message, InboundReady):  # the EVSE actors' shared inbox: one burst
            self._take(message.inbox.take())
            return
        if isinstance(message, AppliedLatch):  # what came before it is written
            message.release()
            return
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
            for event in message.events:  # one failing event must not cost the others
                self._receive(event)
        else:
            self._receive(message)

    def _batch_done(self) -> None:
        try:
            self.listener.batch_done()
        except Exception:
            log.exception("dashboard listener failed to finish a batch")

    def _receive(self, message: Any) -> None:
        try:
            match message:
                case EvseChanged():
                    self.listener.evse_changed(message)
                case StationChanged():
                    self.listener.station_changed(message)
                case OperatorAlert():
                    self.listener.operator_alert(message)
                case ListenerTimer(token=token):
                    self.listener.timer_fired(token)
                case _:
                    log.warning("DashboardSubscriber: unexpected message %r", message)
        except Exception:
            log.exception("dashboard listener failed on %r", type(message).__name__)
