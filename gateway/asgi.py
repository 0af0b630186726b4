"""The gateway as an ASGI app: one event loop per worker, blocking work on a bounded pool.

The resources stay plain synchronous code (they call storage, the authenticator and the CSMS,
which block); :func:`threaded` gives each an asynchronous face that reads the request body on
the loop (bounded in size and time, chunked or not) and runs the responder on the worker's
:class:`Offload` pool, at most :data:`PER_CLIENT_IN_FLIGHT` at once per client address (the
next one answers 429), so no client can take every thread. Event streams are native
coroutines (:class:`LiveStreams`, ``gateway/events.py``): an open stream costs a queue and a
socket, not a thread.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import threading
import weakref
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Final

import falcon
import falcon.asgi

from actors.live import LiveEvent, LiveHub
from gateway.live_coalesce import COALESCE_S, Coalescer, evse_key
from gateway.security import MAX_BODY_BYTES

__all__ = [
    "BODY_TIMEOUT_S",
    "PER_CLIENT_IN_FLIGHT",
    "AsgiRoutes",
    "AsyncMiddleware",
    "CoalescingLiveStream",
    "LiveStream",
    "LiveStreams",
    "Offload",
    "read_body",
    "threaded",
]

BODY_TIMEOUT_S: Final = 10.0
"""A request body must arrive whole within this (408 otherwise)."""
PER_CLIENT_IN_FLIGHT: Final = 32
THREADS: Final = 128
BODY_METHODS: Final = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class Offload:
    """The worker's pool for blocking work, with a cap per client address."""

    def __init__(self, threads: int = THREADS, per_client: int = PER_CLIENT_IN_FLIGHT) -> None:
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="gateway")
        self._per_client = per_client
        self._in_flight: collections.Counter[str] = collections.Counter()
        self._lock = threading.Lock()

    async def run(self, client: str, fn: Callable[..., Any], *args: Any) -> Any:
        with self._lock:
            if self._in_flight[client] >= self._per_client:
                raise falcon.HTTPTooManyRequests(
                    title="Too many requests",
                    description="too many requests in progress from this address",
                    retry_after=1,
                )
            self._in_flight[client] += 1
        try:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._pool, functools.partial(fn, *args))
        finally:
            with self._lock:
                self._in_flight[client] -= 1
                if self._in_flight[client] <= 0:
                    del self._in_flight[client]

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


async def read_body(req: falcon.asgi.Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """The whole body (de-chunked by the server), at most ``limit`` bytes (413) and within
    :data:`BODY_TIMEOUT_S` (408)."""
    too_large = falcon.HTTPContentTooLarge(
        title="Body too large", description=f"bodies are limited to {limit} bytes"
    )
    if req.content_length is not None and req.content_length > limit:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(BODY_TIMEOUT_S):
            async for chunk in req.stream:
                size += len(chunk)
                if size > limit:
                    raise too_large
                chunks.append(chunk)
    except TimeoutError:
        raise falcon.HTTPError(
            falcon.HTTP_408, title="Request timeout", description="the body came too slowly"
        ) from None
    return b"".join(chunks)


def _client(req: falcon.asgi.Request) -> str:
    return req.remote_addr or "unknown"


def _responder(method: Callable[..., None], offload: Offload) -> Callable[..., Awaitable[None]]:
    async def respond(req: falcon.asgi.Request, resp: falcon.asgi.Response, **params: Any) -> None:
        if req.method in BODY_METHODS:
            req.context.raw_body = await read_body(req)
        await offload.run(_client(req), functools.partial(method, **params), req, resp)

    return respond


def _inline(method: Callable[..., None]) -> Callable[..., Awaitable[None]]:
    async def respond(req: falcon.asgi.Request, resp: falcon.asgi.Response, **params: Any) -> None:
        method(req, resp, **params)

    return respond


def threaded(resource: Any, offload: Offload, *, inline: bool = False) -> Any:
    """An asynchronous face of a synchronous ``resource``: every ``on_*`` responder (suffixed
    ones too) reads the body on the loop, then runs on ``offload``; with ``inline``, on the
    loop itself (for reads of memory that never block: the read model, the health)."""
    face = type(f"Async{type(resource).__name__}", (), {})()
    for name in dir(resource):
        if name.startswith("on_") and callable(method := getattr(resource, name)):
            setattr(face, name, _inline(method) if inline else _responder(method, offload))
    return face


def _sink(sink: Callable[..., None], offload: Offload) -> Callable[..., Awaitable[None]]:
    async def serve(req: falcon.asgi.Request, resp: falcon.asgi.Response, **params: Any) -> None:
        await offload.run(_client(req), functools.partial(sink, **params), req, resp)

    return serve


class AsgiRoutes:
    """``add_route`` and ``add_sink`` of a :class:`falcon.asgi.App` for synchronous resources
    and sinks (each made :func:`threaded`), so the route table is written once."""

    def __init__(self, app: falcon.asgi.App, offload: Offload) -> None:
        self._app = app
        self._offload = offload

    def add_route(
        self, uri_template: str, resource: Any, *, inline: bool = False, **kwargs: Any
    ) -> None:
        face = threaded(resource, self._offload, inline=inline)
        self._app.add_route(uri_template, face, **kwargs)

    def add_sink(self, sink: Callable[..., None], prefix: Any = r"/") -> None:
        self._app.add_sink(_sink(sink, self._offload), prefix)  # type: ignore[arg-type]


class AsyncMiddleware:
    """A synchronous middleware on the ASGI app: on the loop (quick checks: headers, token
    signatures), or on the pool for what may block (``blocking_unless``: the request methods
    for which it never does, e.g. the token check reads storage only on writes)."""

    def __init__(
        self, middleware: Any, offload: Offload, blocking_unless: frozenset[str] | None = None
    ) -> None:
        self._middleware = middleware
        self._offload = offload
        self._blocking_unless = blocking_unless
        if hasattr(middleware, "process_request"):
            self.process_request = self._process_request
        if hasattr(middleware, "process_response"):
            self.process_response = self._process_response

    async def _process_request(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        blocking = self._blocking_unless is not None and req.method not in self._blocking_unless
        if blocking:
            await self._offload.run(_client(req), self._middleware.process_request, req, resp)
        else:
            self._middleware.process_request(req, resp)

    async def _process_response(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, resource: Any, ok: bool
    ) -> None:
        self._middleware.process_response(req, resp, resource, ok)


class LiveStream:
    """One open event stream: a bounded queue on the loop (the oldest dropped when full)."""

    def __init__(self, user_id: str | None, everything: bool, size: int = 1000) -> None:
        self.user_id = user_id
        self.everything = everything
        self.queue: asyncio.Queue[LiveEvent | None] = asyncio.Queue(maxsize=size)
        self.lagged = False
        self.closing = False
        """The worker is stopping: the stream ends (the browser reconnects elsewhere)."""

    def put(self, event: LiveEvent) -> None:
        if self.queue.full():
            self.lagged = True
            self.queue.get_nowait()  # live views want the newest state
        self.queue.put_nowait(event)

    def close_now(self) -> None:
        """End the stream: its waiting :meth:`take` returns at once."""
        self.closing = True
        if self.queue.full():
            self.queue.get_nowait()
        self.queue.put_nowait(None)

    async def take(self, timeout: float) -> list[LiveEvent]:
        """What to send next (waiting up to ``timeout``): here one event, or none."""
        try:
            async with asyncio.timeout(timeout):
                event = await self.queue.get()
        except TimeoutError:
            return []
        return [] if event is None else [event]


class CoalescingLiveStream(LiveStream):
    """An operator's stream on the loop: a :class:`~gateway.live_coalesce.Coalescer` (the
    newest state per EVSE at most every ``interval_s``, every other event in order) instead
    of a queue, so a slow client holds at most one event per EVSE."""

    def __init__(self, user_id: str | None, interval_s: float = COALESCE_S) -> None:
        super().__init__(user_id, everything=True, size=1)
        self.buffer: Coalescer[LiveEvent] = Coalescer(evse_key, interval_s=interval_s)
        self._wake = asyncio.Event()

    def put(self, event: LiveEvent) -> None:
        idle = self.buffer.due_in() is None
        self.buffer.put(event)
        if self.buffer.lagged:
            self.buffer.lagged = False
            self.lagged = True
        if idle or self.buffer.due_in() == 0:  # else the waiter already waits for the due time
            self._wake.set()

    def close_now(self) -> None:
        self.closing = True
        self._wake.set()

    async def take(self, timeout: float) -> list[LiveEvent]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self.closing:
            due = self.buffer.due_in()
            if due == 0:
                return self.buffer.take()
            remaining = deadline - loop.time()
            if remaining <= 0:
                return []
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining if due is None else min(due, remaining)):
                    await self._wake.wait()
        return []


class LiveStreams:
    """Every open stream of this worker, fed from the hub through one hop onto the loop.

    The hub calls the tap on the publisher's thread (an actor, or the gateway's MQTT client);
    it schedules one dispatch per event on the loop, which hands the event to the operators'
    streams (public and operator events) and to its driver's streams (their own events).
    """

    def __init__(self, hub: LiveHub, *, per_user: int = 8, per_worker: int = 12_000) -> None:
        self._hub = hub
        self.per_user = per_user
        self.per_worker = per_worker
        self._loop: asyncio.AbstractEventLoop | None = None
        self._everything: set[LiveStream] = set()
        self._by_user: dict[str, set[LiveStream]] = collections.defaultdict(set)
        self._count = 0

    @property
    def count(self) -> int:
        return self._count

    def open(self, user_id: str, everything: bool) -> LiveStream:
        """A new stream (on the loop); 429 past the caps."""
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
            self._hub.add_tap(self._from_any_thread)
            _OPEN.add(self)
        mine = self._by_user[user_id]
        if len(mine) >= self.per_user or self._count >= self.per_worker:
            if not mine:
                del self._by_user[user_id]
            raise falcon.HTTPTooManyRequests(
                title="Too many streams",
                description=f"at most {self.per_user} open event streams per account",
                retry_after=5,
            )
        stream = CoalescingLiveStream(user_id) if everything else LiveStream(user_id, everything)
        mine.add(stream)
        if everything:
            self._everything.add(stream)
        self._count += 1
        return stream

    def close_all(self) -> None:
        """The worker is stopping: every open stream ends now, so the server need not wait
        its graceful time-out for them (:func:`close_all_streams`)."""
        for streams in list(self._by_user.values()):
            for stream in list(streams):
                stream.close_now()

    def close(self, stream: LiveStream) -> None:
        mine = self._by_user.get(stream.user_id or "")
        if mine is not None and stream in mine:
            mine.discard(stream)
            self._count -= 1
            if not mine:
                del self._by_user[stream.user_id or ""]
        self._everything.discard(stream)

    def _from_any_thread(self, event: LiveEvent) -> None:
        assert self._loop is not None
        with contextlib.suppress(RuntimeError):  # the loop has closed: the worker is stopping
            self._loop.call_soon_threadsafe(self._dispatch, event)

    def _dispatch(self, event: LiveEvent) -> None:
        if event.public or event.user_id is None:
            for stream in self._everything:
                stream.put(event)
        if event.user_id is not None:
            for stream in self._by_user.get(event.user_id, ()):
                if not stream.everything:
                    stream.put(event)


_OPEN: weakref.WeakSet[LiveStreams] = weakref.WeakSet()


def close_all_streams() -> None:
    """End every event stream of this process (on its loop): the worker's server calls it
    when it starts to shut down (``gateway.asgi_worker``)."""
    for streams in list(_OPEN):
        streams.close_all()
