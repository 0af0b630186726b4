"""Server-Sent Events: ``/me/events`` (a driver's own sessions and notifications) and
``/events`` (operators: every EVSE change, station change and alert).

An operator's stream coalesces (:mod:`gateway.live_coalesce`): the newest state per EVSE,
sent at most every 250 ms, and every other event in order; what waits for a slow client is
bounded by the number of EVSEs. A driver's stream sends each event.

On the ASGI app (what the workers serve) a stream is a coroutine
(:class:`AsyncEventStreamResource`); :class:`EventStreamResource` is the same stream on the
WSGI app, holding a thread. Streams end after ``max_duration_s`` (the browser's EventSource
reconnects by itself, as ``retry`` tells it) and send a comment every ``heartbeat_s`` so dead
clients are noticed.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Iterator

import falcon
import falcon.asgi

from actors.live import LiveEvent, LiveHub, LiveStream
from gateway.asgi import LiveStream as AsyncLiveStream
from gateway.asgi import LiveStreams
from gateway.live_coalesce import COALESCE_S, Coalescer, evse_key
from gateway.security import principal, require
from gateway.views import live_json

__all__ = ["AsyncEventStreamResource", "CoalescingStream", "EventStreamResource"]


class CoalescingStream(LiveStream):
    """An operator's stream on a thread: the hub offers, :meth:`take` waits for what is due."""

    def __init__(self, interval_s: float = COALESCE_S) -> None:
        super().__init__(accept=lambda _: True)
        self.buffer: Coalescer[LiveEvent] = Coalescer(evse_key, interval_s=interval_s)
        self._ready = threading.Condition()

    def offer(self, event: LiveEvent) -> None:
        with self._ready:
            idle = self.buffer.due_in() is None
            self.buffer.put(event)
            if self.buffer.lagged:
                self.buffer.lagged = False
                self.lagged = True
            if idle or self.buffer.due_in() == 0:  # else the taker waits for the due time
                self._ready.notify()

    def take(self, timeout: float) -> list[LiveEvent]:
        deadline = time.monotonic() + timeout
        with self._ready:
            while True:
                due = self.buffer.due_in()
                if due == 0:
                    return self.buffer.take()
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return []
                self._ready.wait(remaining if due is None else min(due, remaining))


class EventStreamResource:
    def __init__(
        self,
        hub: LiveHub,
        *,
        everything: bool,
        heartbeat_s: float = 15.0,
        max_duration_s: float = 300.0,
    ) -> None:
        self._hub = hub
        self._everything = everything
        self._heartbeat_s = heartbeat_s
        self._max_duration_s = max_duration_s

    @falcon.before(require())
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        who = principal(req)
        if self._everything and who.role != "operator":
            raise falcon.HTTPForbidden(
                title="Forbidden", description="this stream is for operators"
            )
        user_id = who.user_id

        def accept(event: LiveEvent) -> bool:
            if self._everything:
                return event.public or event.user_id is None
            return event.user_id == user_id

        stream = self._hub.subscribe(accept, CoalescingStream() if self._everything else None)
        resp.content_type = "text/event-stream"
        resp.set_header("Cache-Control", "no-store")
        resp.set_header("X-Accel-Buffering", "no")
        resp.stream = self._frames(stream)

    def _frames(self, stream: LiveStream) -> Iterator[bytes]:
        deadline = time.monotonic() + self._max_duration_s
        try:
            yield b"retry: 2000\n: connected\n\n"
            while time.monotonic() < deadline:
                events = stream.take(timeout=self._heartbeat_s)
                if stream.lagged:
                    stream.lagged = False
                    yield b"event: lagged\ndata: {}\n\n"
                yield b"".join(e.encode(live_json) for e in events) if events else b": ping\n\n"
        finally:
            self._hub.unsubscribe(stream)


class AsyncEventStreamResource:
    """The same streams on the ASGI app: each a coroutine on the worker's loop, fed by
    :class:`~gateway.asgi.LiveStreams` (at most ``per_user`` per account and ``per_worker`` in
    all, 429 beyond)."""

    def __init__(
        self,
        streams: LiveStreams,
        *,
        everything: bool,
        heartbeat_s: float = 15.0,
        max_duration_s: float = 300.0,
    ) -> None:
        self._streams = streams
        self._everything = everything
        self._heartbeat_s = heartbeat_s
        self._max_duration_s = max_duration_s

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        who = principal(req)
        if self._everything and who.role != "operator":
            raise falcon.HTTPForbidden(
                title="Forbidden", description="this stream is for operators"
            )
        stream = self._streams.open(who.user_id, self._everything)
        resp.content_type = "text/event-stream"
        resp.set_header("Cache-Control", "no-store")
        resp.set_header("X-Accel-Buffering", "no")
        resp.stream = self._frames(stream)

    async def _frames(self, stream: AsyncLiveStream) -> AsyncIterator[bytes]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._max_duration_s
        try:
            yield b"retry: 2000\n: connected\n\n"
            while loop.time() < deadline and not stream.closing:
                events = await stream.take(self._heartbeat_s)
                if stream.closing and not events:
                    break  # the worker is stopping: the browser reconnects (to another)
                if stream.lagged:
                    stream.lagged = False
                    yield b"event: lagged\ndata: {}\n\n"
                yield b"".join(e.encode(live_json) for e in events) if events else b": ping\n\n"
        finally:
            self._streams.close(stream)
