"""The threads the ingest wakes for every message run as ``SCHED_BATCH``
(``actors.scheduling``): the EVSE actors and the listener hosts. A thread they start would
inherit the class (Linux copies it), so the threads they may start put themselves back in
the normal class: nothing else changes its scheduling."""

from __future__ import annotations

import os
import threading
from typing import Any

import pytest

from actors.evse import EvseActor
from actors.evse_state import EvseState
from actors.listeners import EvseListener, ListenerHost
from actors.messages import GetState
from actors.scheduling import run_as_batch_thread
from actors.timers import Timers
from protocol import EvseDescriptor, EvseId, StationId

pytestmark = pytest.mark.skipif(
    not hasattr(os, "SCHED_BATCH"), reason="SCHED_BATCH is Linux's; CI runs on Linux"
)


def policy_of(native_id: int) -> int:
    return os.sched_getscheduler(native_id)


class ThreadWitness(EvseListener):
    def __init__(self) -> None:
        self.native_id = 0
        self.seen = threading.Event()

    def started(self) -> None:
        self.native_id = threading.get_native_id()
        self.seen.set()


def test_a_thread_that_asks_runs_as_batch_and_no_other_thread_does() -> None:
    result: dict[str, Any] = {}

    def body() -> None:
        result["ok"] = run_as_batch_thread()
        result["mine"] = policy_of(0)

    worker = threading.Thread(target=body)
    worker.start()
    worker.join(10)
    assert result == {"ok": True, "mine": os.SCHED_BATCH}
    assert policy_of(0) == os.SCHED_OTHER, "the calling thread only, not the process"


def test_evse_actors_and_listener_hosts_run_as_batch() -> None:
    witness = ThreadWitness()
    host = ListenerHost.start([witness], name="witness")
    state = EvseState(station_id=StationId("st-batch"), descriptor=EvseDescriptor(id=EvseId("1")))
    evse = EvseActor.start(state, bridge=None, supervisor=None)
    try:
        assert witness.seen.wait(10), "the host never started"
        assert policy_of(witness.native_id) == os.SCHED_BATCH
        assert evse.ask(GetState(), timeout=10) == state  # started and serving
        evse_threads = [
            t for t in threading.enumerate() if t.name.startswith("EvseActor") and t.is_alive()
        ]
        assert evse_threads, "no EVSE actor thread"
        assert {policy_of(t.native_id or 0) for t in evse_threads} == {os.SCHED_BATCH}
        assert policy_of(0) == os.SCHED_OTHER, "the test's own thread is untouched"
    finally:
        evse.stop()
        host.stop()
    assert not evse.is_alive()


def test_a_thread_started_by_a_batch_thread_is_batch_unless_it_resets() -> None:
    """The kernel's rule the resets exist for, and the timer thread, which an EVSE actor or
    a listener host may be the first to start (the clock starts it lazily)."""
    seen: dict[str, int] = {}
    done = threading.Event()

    def batch_parent() -> None:
        run_as_batch_thread()
        plain = threading.Thread(target=lambda: seen.setdefault("plain", policy_of(0)))
        plain.start()
        plain.join(10)
        timers = Timers()
        timers.call_later(0, lambda: (seen.setdefault("timers", policy_of(0)), done.set()))
        assert done.wait(10)
        timers.stop()

    parent = threading.Thread(target=batch_parent)
    parent.start()
    parent.join(20)
    assert seen == {"plain": os.SCHED_BATCH, "timers": os.SCHED_OTHER}
