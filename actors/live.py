"""LiveHub: fan-out of live events to Server-Sent-Event streams.

Producers (subscriber actors, on their own threads) call :meth:`LiveHub.publish`;
each open SSE stream owns a bounded queue and reads it on its gunicorn thread.
A stream that falls behind loses its oldest events (and is told so with a
``lagged`` event) instead of slowing the producers: an actor never blocks on a
browser.
"""

from __future__ import annotations

import itertools
import json
import queue
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from actors.evse_state import EvseState

__all__ = ["LiveData", "LiveEvent", "LiveHub", "LiveStream"]


LiveData = Mapping[str, Any] | EvseState
"""What an event carries: an EVSE's state (the gateway renders its JSON shape when a stream
sends it: the actors know no JSON shapes), or a JSON-able mapping."""


@dataclass(frozen=True, slots=True, kw_only=True)
class LiveEvent:
    """One event for the browser: ``event:`` name, its ``data``, and who may see it."""

    kind: str
    data: LiveData
    user_id: str | None = None
    """Only this user's streams (and operators') get it; ``None``: operators only."""
    public: bool = False
    """Every stream gets it (EVSE status changes are public information)."""
    id: int = 0
    _frame: list[bytes] = field(default_factory=list, compare=False, repr=False)
    """The encoded frame, once a stream has sent it (a one-slot cache)."""

    def encode(self, render: Callable[[LiveEvent], Mapping[str, Any]]) -> bytes:
        """The SSE frame, with ``render(self)`` as its JSON data. Rendered once per event
        however many streams send it (runs on a stream's thread; two streams racing render
        twice, the same bytes)."""
        if self._frame:
            return self._frame[0]
        body = json.dumps(render(self), separators=(",", ":"))
        frame = f"id: {self.id}\nevent: {self.kind}\ndata: {body}\n\n".encode()
        self._frame.append(frame)
        return frame


@dataclass
class LiveStream:
    """One SSE client. ``accept`` decides which events it wants."""

    accept: Callable[[LiveEvent], bool]
    events: queue.Queue[LiveEvent] = field(default_factory=lambda: queue.Queue(maxsize=1000))
    lagged: bool = False

    def get(self, timeout: float) -> LiveEvent | None:
        try:
            return self.events.get(timeout=timeout)
        except queue.Empty:
            return None

    def take(self, timeout: float) -> list[LiveEvent]:
        """What to send next (waiting up to ``timeout``): here one event, or none."""
        event = self.get(timeout)
        return [] if event is None else [event]

    def offer(self, event: LiveEvent) -> None:
        """From :meth:`LiveHub.publish`, on the publisher's thread: never blocks. When the
        queue is full the oldest event goes (live views want the newest state)."""
        try:
            self.events.put_nowait(event)
        except queue.Full:
            self.lagged = True
            try:
                self.events.get_nowait()
                self.events.put_nowait(event)
            except (queue.Empty, queue.Full):
                pass


class LiveHub:
    """Thread-safe publish/subscribe for live events."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._streams: list[LiveStream] = []
        self._ids = itertools.count(1)
        self._taps: list[Callable[[LiveEvent], None]] = []

    def add_tap(self, tap: Callable[[LiveEvent], None]) -> None:
        """``tap(event)`` for every event, on the publisher's thread, before the streams get
        it (the node forwards events to its gateways: :mod:`actors.node_server`). A tap must
        not block. Add before anything publishes."""
        self._taps.append(tap)

    def subscribe(
        self, accept: Callable[[LiveEvent], bool], stream: LiveStream | None = None
    ) -> LiveStream:
        """A new stream of the events ``accept`` takes (``stream``: a stream of one's own,
        e.g. one that coalesces; its ``accept`` is replaced)."""
        if stream is None:
            stream = LiveStream(accept=accept)
        stream.accept = accept
        with self._lock:
            self._streams.append(stream)
        return stream

    def unsubscribe(self, stream: LiveStream) -> None:
        with self._lock:
            if stream in self._streams:
                self._streams.remove(stream)

    @property
    def stream_count(self) -> int:
        with self._lock:
            return len(self._streams)

    def publish(
        self, kind: str, data: LiveData, *, user_id: str | None = None, public: bool = False
    ) -> LiveEvent:
        event = LiveEvent(kind=kind, data=data, user_id=user_id, public=public, id=next(self._ids))
        for tap in self._taps:
            tap(event)
        with self._lock:
            streams = list(self._streams)
        for stream in streams:
            if stream.accept(event):
                stream.offer(event)
        return event
