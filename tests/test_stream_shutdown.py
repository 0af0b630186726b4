"""Event streams end when their worker stops (``gateway.asgi.close_all_streams``, called by
the worker's server as it starts to shut down): without it uvicorn waited out the graceful
time-out for every open stream (10 s for each Ctrl-C of ``smartcharge up`` with a dashboard
open) and the browser's stream was cut instead of ended."""

from __future__ import annotations

import asyncio

import pytest

from actors.live import LiveHub
from gateway.asgi import LiveStreams, close_all_streams
from gateway.events import AsyncEventStreamResource

pytestmark = pytest.mark.timeout(30)


async def _drain_frames(everything: bool) -> list[bytes]:
    hub = LiveHub()
    streams = LiveStreams(hub)
    resource = AsyncEventStreamResource(streams, everything=everything, heartbeat_s=60.0)
    stream = streams.open("user-1", everything)
    frames = resource._frames(stream)
    seen = [await anext(frames)]  # the opening frame
    hub.publish("notification", {"n": 1}, user_id="user-1", public=True)
    seen.append(await asyncio.wait_for(anext(frames), 5))  # a live event, then it waits
    waiting = asyncio.ensure_future(anext(frames))
    await asyncio.sleep(0)  # the generator is now waiting (up to 60 s) for the next event
    assert not waiting.done()
    close_all_streams()
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(waiting, 5)  # ended at once, far within the heartbeat
    assert streams.count == 0, "the ended stream is closed and counted out"
    return seen


@pytest.mark.parametrize("everything", [False, True], ids=["driver", "operator"])
def test_an_open_stream_ends_when_the_worker_stops(everything: bool) -> None:
    seen = asyncio.run(_drain_frames(everything))
    assert seen[0].startswith(b"retry:")
    assert b"event: notification" in seen[1]
