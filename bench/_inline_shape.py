"""The other shape, for ``bench ingest``'s comparison: no actor per EVSE.

:class:`InlineCsms` is the ingest path of :class:`actors.system.CsmsSystem` with one hop
taken out: the same MQTT child process and link (:class:`actors.mqtt_link.MqttLink`, its
linger and batched acknowledgements), the same parser, the same EVSE logic
(:class:`actors.evse_logic.Evse`) and the same "live" listener host (the read model, the
live feed and the bench's probe, woken once per burst through a
:class:`~actors.inbox.BatchInbox`), but every EVSE's ``step`` runs on the link's reader
thread instead of on an ``EvseActor`` of its own. It has no commands, supervision or
storage: it measures what the design's one-actor-per-EVSE costs per message, and nothing
else. The product does not use it.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from actors.acks import AppliedLatch
from actors.evse_logic import Evse
from actors.evse_state import EvseState
from actors.fleet_view import FleetView, FleetViewWriter
from actors.inbox import BatchInbox
from actors.listeners import EvseListener, ListenerHost
from actors.live import LiveHub
from actors.live_feed import LiveFeed
from actors.messages import EvseChanged, EvseChangedBatch
from actors.mqtt_link import MqttLink
from actors.mqtt_session import Batch
from actors.session_owners import SessionOwners
from protocol import (
    MeterValues,
    ProtocolError,
    StationBirth,
    StatusReport,
    evse_key,
    parse,
)
from protocol.mqtt_settings import parse_mqtt_url

__all__ = ["InlineCsms"]


class InlineCsms:
    """Station messages applied on the link's reader thread (see the module docstring)."""

    def __init__(self, url: str, probe: EvseListener, client_id: str = "bench-inline") -> None:
        self.view = FleetView()
        self.connected = threading.Event()
        self._evses: dict[str, Evse] = {}
        self._host = ListenerHost.start(
            [FleetViewWriter(self.view), LiveFeed(LiveHub(), SessionOwners()), probe],
            name="live",
        )
        self._inbox = BatchInbox(self._host)
        self._link = MqttLink(
            parse_mqtt_url(url),
            client_id=client_id,
            keepalive=30,
            on_messages=self._on_messages,
            on_state=self._on_state,
            on_publish_failed=lambda topic, error: None,
        )
        self._link.start()

    def stop(self) -> None:
        self._link.stop()
        self._host.stop()

    def _on_state(self, up: bool, detail: str, failure: bool) -> None:
        if up:
            self.connected.set()

    def _on_messages(self, batch: Batch, latch: AppliedLatch) -> None:
        now_ms = int(time.time() * 1000)
        changed: list[EvseChanged] = []
        for topic, payload in batch:
            try:
                message: Any = parse(topic or "", payload)
            except ProtocolError:
                continue
            for evse in self._evses_of(message):
                changed += (e for e in evse.step(message, now_ms) if isinstance(e, EvseChanged))
        events = [EvseChangedBatch(events=tuple(changed))] if changed else []
        self._inbox.put_many(events, latch)

    def _evses_of(self, message: Any) -> list[Evse]:
        if isinstance(message, StationBirth):
            station = message.station
            for descriptor in station.evses:
                key = evse_key(station.id, descriptor.id)
                if key not in self._evses:
                    state = EvseState(station_id=station.id, descriptor=descriptor)
                    self._evses[key] = Evse(state=state)
            return [self._evses[evse_key(station.id, d.id)] for d in station.evses]
        if isinstance(message, StatusReport):
            found = self._evses.get(evse_key(message.station_id, message.info.evse_id))
        elif isinstance(message, MeterValues):
            found = self._evses.get(evse_key(message.station_id, message.evse_id))
        else:
            found = None
        return [] if found is None else [found]
