"""An operator's event stream coalesces (``gateway.live_coalesce``): the newest state per EVSE
at most every 250 ms, every other event in order, and a client that does not read holds at
most one event per EVSE on the server. The logic on a fake clock, a property against an
independent model, then the ASGI app with a client that stops reading."""

from __future__ import annotations

import asyncio
import itertools
import json
from pathlib import Path
from typing import Any

import argon2
import falcon
import falcon.testing
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.live import LiveEvent, LiveHub
from actors.system import CsmsConfig, CsmsSystem
from gateway.app import create_app
from gateway.asgi import CoalescingLiveStream, LiveStreams
from gateway.auth import LocalAuthenticator
from gateway.auth_model import Principal
from gateway.events import CoalescingStream, EventStreamResource
from gateway.live_coalesce import Coalescer, evse_key
from storage import DuplicateError, Role
from tests.db import open_test_storage
from tests.support import evse_state


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def keyed(item: tuple[str, Any]) -> str | None:
    """Test items: ``("evse:<key>", value)`` is keyed by ``<key>``; anything else is not."""
    kind = item[0]
    return kind.split(":", 1)[1] if kind.startswith("evse:") else None


# -- the logic ------------------------------------------------------------------------------


def test_the_newest_state_per_evse_goes_at_most_every_interval_and_the_rest_at_once() -> None:
    clock = Clock()
    buffer: Coalescer[tuple[str, Any]] = Coalescer(keyed, interval_s=0.25, clock=clock)
    assert buffer.due_in() is None
    buffer.put(("evse:a", 1))
    assert buffer.due_in() == 0  # the first goes at once
    assert buffer.take() == [("evse:a", 1)]
    buffer.put(("evse:a", 2))
    buffer.put(("evse:b", 1))
    buffer.put(("evse:a", 3))
    clock.now += 0.1
    assert buffer.due_in() == pytest.approx(0.15)
    assert buffer.take() == []  # not yet
    buffer.put(("alert", "x"))
    buffer.put(("station", "y"))
    assert buffer.due_in() == 0
    assert buffer.take() == [("alert", "x"), ("station", "y")]  # never held, in order
    clock.now += 0.15
    assert buffer.take() == [("evse:b", 1), ("evse:a", 3)]  # the newest of each
    assert len(buffer) == 0


def test_a_client_that_never_takes_holds_one_item_per_evse() -> None:
    buffer: Coalescer[tuple[str, Any]] = Coalescer(keyed, clock=Clock())
    for i in range(100_000):
        buffer.put((f"evse:{i % 7}", i))
    assert len(buffer) == 7
    assert sorted(v for _, v in buffer.take()) == list(range(100_000 - 7, 100_000))


def test_too_many_waiting_events_empty_the_buffer_and_say_lagged() -> None:
    buffer: Coalescer[tuple[str, Any]] = Coalescer(keyed, clock=Clock(), max_ordered=3)
    for i in range(3):
        buffer.put(("alert", i))
    assert not buffer.lagged
    buffer.put(("evse:a", 1))
    buffer.put(("alert", 3))
    assert buffer.lagged
    assert buffer.take() == [("alert", 3)]


def test_evse_events_are_keyed_by_their_evse_and_nothing_else_is() -> None:
    state = evse_state("co-001.1")
    assert evse_key(LiveEvent(kind="evse", data=state)) == "co-001.1"
    assert evse_key(LiveEvent(kind="evse", data={"id": "co-001.2"})) == "co-001.2"
    assert evse_key(LiveEvent(kind="session", data=state)) is None
    assert evse_key(LiveEvent(kind="alert", data={"id": 3, "evse_id": "co-001.1"})) is None


# -- the property, against a model that knows nothing of the buffer --------------------------

steps = st.lists(
    st.one_of(
        st.tuples(st.just("evse"), st.integers(0, 4)),  # an EVSE changes
        st.tuples(st.sampled_from(["alert", "station", "alert_ack"]), st.just(0)),
        st.tuples(st.just("wait"), st.floats(0, 0.6)),  # time passes
        st.tuples(st.just("take"), st.just(0)),  # the client reads
    ),
    max_size=120,
)


@settings(max_examples=300, deadline=None)
@given(steps)
def test_what_comes_out_is_the_last_value_per_evse_and_every_other_event_in_order(
    script: list[tuple[str, Any]],
) -> None:
    clock = Clock()
    buffer: Coalescer[tuple[str, Any]] = Coalescer(keyed, interval_s=0.25, clock=clock)
    put: list[tuple[str, Any]] = []
    out: list[tuple[float, tuple[str, Any]]] = []
    for n, (what, arg) in enumerate(script):
        if what == "wait":
            clock.now += arg
        elif what == "take":
            out += [(clock.now, item) for item in buffer.take()]
        else:
            item = (f"evse:{arg}", n) if what == "evse" else (what, n)
            put.append(item)
            buffer.put(item)
        assert len({keyed(i) for i in put if keyed(i) is not None}) >= len(buffer._latest)
    clock.now += 1.0
    out += [(clock.now, item) for item in buffer.take()]  # the client catches up
    sent = [item for _, item in out]

    # Every other event, once each, in the order it came.
    assert [i for i in sent if keyed(i) is None] == [i for i in put if keyed(i) is None]
    # Per EVSE: the last value put is the last sent, and what is sent is in the order put.
    for key in {keyed(i) for i in put} - {None}:
        values = [v for k, v in put if k == f"evse:{key}"]
        got = [v for k, v in sent if k == f"evse:{key}"]
        assert got[-1] == values[-1]
        assert got == sorted(set(got))
        assert set(got) <= set(values)
    # EVSE states leave at most once per interval.
    flushes = sorted({t for t, i in out if keyed(i) is not None})
    assert all(b - a >= 0.25 for a, b in itertools.pairwise(flushes))


# -- the streams ------------------------------------------------------------------------------


def test_the_threaded_stream_waits_for_what_is_due() -> None:
    hub = LiveHub()
    stream = hub.subscribe(lambda e: e.user_id is None, CoalescingStream(interval_s=30.0))
    for i in range(1000):
        hub.publish("evse", evse_state("co-001.1", energy_wh=float(i)), public=True)
    first = stream.take(timeout=5)
    assert [e.data.energy_wh for e in first] == [999.0]  # type: ignore[union-attr]
    for i in range(1000, 2000):
        hub.publish("evse", evse_state("co-001.1", energy_wh=float(i)), public=True)
    hub.publish("alert", {"id": 1})
    assert [e.kind for e in stream.take(timeout=5)] == ["alert"]  # the EVSE waits its turn
    assert stream.take(timeout=0.01) == []
    assert isinstance(stream, CoalescingStream)
    assert len(stream.buffer) == 1


PASSWORD = "correct horse battery"
EVSES = 10
CHANGES = 20_000
ALERT_EVERY = 1_000


def _scope(token: str) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "https",
        "path": "/api/v1/events",
        "raw_path": b"/api/v1/events",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"127.0.0.1:8443"),
            (b"authorization", f"Bearer {token}".encode()),
        ],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8443),
    }


def _frames(raw: bytes) -> list[tuple[str, Any]]:
    out = []
    for block in raw.decode().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "event" in fields:
            out.append((fields["event"], json.loads(fields["data"])))
    return out


@pytest.mark.timeout(60)
def test_a_client_that_stops_reading_gets_the_latest_state_from_a_bounded_buffer(
    tmp_path: Path,
) -> None:
    """The ASGI app's operator stream, with a client whose every read (the ASGI ``send``)
    blocks while it is not reading, as a full socket does: 20,000 EVSE changes and 20 alerts
    later the server holds one event per EVSE plus the alerts, and once the client reads it
    gets every alert in order and the newest state of each EVSE."""
    storage = open_test_storage(tmp_path / "db", None)
    auth = LocalAuthenticator(
        storage.users,
        storage.refresh_tokens,
        secret=b"s" * 32,
        duplicate_error=DuplicateError,
        hasher=argon2.PasswordHasher(time_cost=1, memory_cost=64, parallelism=1),
    )
    auth.create_user("ops@example.com", PASSWORD, Role.OPERATOR)
    token = auth.login("ops@example.com", PASSWORD).access_token
    csms = CsmsSystem(CsmsConfig())
    app = create_app(
        csms, auth=auth, storage=storage, https_base="https://127.0.0.1:8443", asgi=True
    )
    keys = [f"co-{n // 2 + 1:03d}.{n % 2 + 1}" for n in range(EVSES)]

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        reading = asyncio.Event()
        reading.set()
        arrived = asyncio.Event()
        gone = asyncio.Event()
        received: list[bytes] = []
        status: list[int] = []

        async def receive() -> dict[str, Any]:
            if not received and not status:
                return {"type": "http.request", "body": b"", "more_body": False}
            await gone.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])
            elif message["type"] == "http.response.body":
                await reading.wait()  # a client that does not read: the write blocks
                received.append(message.get("body", b""))
                arrived.set()

        served = asyncio.create_task(app(_scope(token), receive, send))
        async with asyncio.timeout(20):
            while not received:
                arrived.clear()
                await arrived.wait()
        assert status == [200]
        streams = {getattr(tap, "__self__", None) for tap in csms.hub._taps} - {None}
        (live,) = [s for s in streams if isinstance(s, LiveStreams)]
        (stream,) = live._everything
        assert isinstance(stream, CoalescingLiveStream)

        reading.clear()  # the client stops reading
        published = asyncio.Event()

        def publish() -> None:
            for i in range(CHANGES):
                state = evse_state(keys[i % EVSES], energy_wh=float(i))
                csms.hub.publish("evse", state, public=True)
                if i % ALERT_EVERY == 0:
                    csms.hub.publish("alert", {"id": i // ALERT_EVERY, "kind": "maintenance"})
            loop.call_soon_threadsafe(published.set)  # after every event's hop onto the loop

        await asyncio.to_thread(publish)
        async with asyncio.timeout(20):
            await published.wait()
        alerts = CHANGES // ALERT_EVERY
        assert len(stream.buffer) <= EVSES + alerts  # bounded by the EVSEs, not by time
        assert len(stream.buffer._latest) <= EVSES

        reading.set()  # the client reads again
        latest = {keys[i % EVSES]: float(i) for i in range(CHANGES)}

        def caught_up() -> bool:
            frames = _frames(b"".join(received))
            seen = {d["id"]: d["energy_wh"] for kind, d in frames if kind == "evse"}
            return seen == latest and sum(k == "alert" for k, _ in frames) == alerts

        async with asyncio.timeout(20):
            while not caught_up():
                arrived.clear()
                await arrived.wait()
        frames = _frames(b"".join(received))
        assert [d["id"] for kind, d in frames if kind == "alert"] == list(range(alerts))
        assert sum(kind == "evse" for kind, _ in frames) < CHANGES // 10  # coalesced
        gone.set()
        served.cancel()
        with pytest.raises(asyncio.CancelledError):
            await served

    try:
        asyncio.run(scenario())
    finally:
        storage.close()


def test_the_threaded_operator_stream_sends_the_newest_state_per_evse_and_every_alert() -> None:
    """The WSGI app's ``/events`` (a thread per stream): what waited while the client was
    away goes out as one write, the newest state of each EVSE and the alerts in order."""
    hub = LiveHub()
    resource = EventStreamResource(hub, everything=True, heartbeat_s=5.0)
    req = falcon.testing.create_req()
    req.context.principal = Principal(user_id="u-ops", email="ops@example.com", role=Role.OPERATOR)
    resp = falcon.Response()
    resource.on_get(req, resp)
    frames = iter(resp.stream)
    try:
        assert next(frames).startswith(b"retry: 2000")
        keys = ["co-001.1", "co-001.2", "co-002.1"]
        for i in range(3_000):
            hub.publish("evse", evse_state(keys[i % 3], energy_wh=float(i)), public=True)
            if i % 1_000 == 0:
                hub.publish("alert", {"id": i // 1_000})
        hub.publish("session", evse_state(keys[0]), user_id="someone")  # not an operator's
        sent = _frames(next(frames))
        assert [d["id"] for kind, d in sent if kind == "alert"] == [0, 1, 2]
        newest = {d["id"]: d["energy_wh"] for kind, d in sent if kind == "evse"}
        assert newest == {"co-001.1": 2997.0, "co-001.2": 2998.0, "co-002.1": 2999.0}
        assert len([kind for kind, _ in sent if kind == "evse"]) == 3
        assert all(kind in ("evse", "alert") for kind, _ in sent)
    finally:
        frames.close()  # type: ignore[attr-defined]
    assert hub.stream_count == 0


@pytest.mark.timeout(20)
def test_a_state_held_back_by_the_interval_is_sent_when_it_falls_due() -> None:
    """After a write, an EVSE change waits out the interval, and then goes: the stream does
    not sleep on until its heartbeat (60 s here, past the test's time-out)."""
    hub = LiveHub()
    stream = hub.subscribe(lambda e: True, CoalescingStream(interval_s=0.05))
    hub.publish("evse", evse_state("co-001.1", energy_wh=1.0), public=True)
    assert len(stream.take(timeout=60)) == 1
    hub.publish("evse", evse_state("co-001.1", energy_wh=2.0), public=True)  # in the interval
    assert [e.data.energy_wh for e in stream.take(timeout=60)] == [2.0]  # type: ignore[union-attr]

    async def on_the_loop() -> list[LiveEvent]:
        loop_stream = CoalescingLiveStream("u-ops", interval_s=0.05)
        loop_stream.put(LiveEvent(kind="evse", data=evse_state("co-001.1", energy_wh=1.0)))
        assert len(await loop_stream.take(60)) == 1
        waiting = asyncio.create_task(loop_stream.take(60))
        await asyncio.sleep(0)  # let the taker start waiting (either order: the same answer)
        loop_stream.put(LiveEvent(kind="evse", data=evse_state("co-001.1", energy_wh=3.0)))
        return await waiting

    got = asyncio.run(on_the_loop())
    assert [e.data.energy_wh for e in got] == [3.0]  # type: ignore[union-attr]
