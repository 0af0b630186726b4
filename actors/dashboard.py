"""Subscribers to EVSE events: the dashboard streams, tests, later SSE and storage.

Listener methods are no-ops by default (Mopidy style): a subscriber overrides
only what it needs. A :class:`DashboardSubscriber` actor receives every event by
``tell`` and calls its listener on the subscriber's own thread, so a slow
listener never slows an EVSE actor.
"""

from __future__ import annotations

import logging
from typing import Any

import pykka

from actors.messages import EvseChanged, OperatorAlert, StationChanged

__all__ = ["DashboardSubscriber", "EvseListener"]

log = logging.getLogger(__name__)


class EvseListener:
    """Override what you need; every method is called on the subscriber actor's thread."""

    def evse_changed(self, event: EvseChanged) -> None:
        """An EVSE's state changed."""

    def station_changed(self, event: StationChanged) -> None:
        """A station came online or went offline."""

    def operator_alert(self, alert: OperatorAlert) -> None:
        """Something an operator must see."""


class DashboardSubscriber(pykka.ThreadingActor):
    """Receives every EVSE change and hands it to a listener; listener errors are logged."""

    def __init__(self, listener: EvseListener) -> None:
        super().__init__()
        self.listener = listener

    def on_receive(self, message: Any) -> None:
        try:
            match message:
                case EvseChanged():
                    self.listener.evse_changed(message)
                case StationChanged():
                    self.listener.station_changed(message)
                case OperatorAlert():
                    self.listener.operator_alert(message)
                case _:
                    log.warning("DashboardSubscriber: unexpected message %r", message)
        except Exception:
            log.exception("dashboard listener failed on %r", type(message).__name__)
