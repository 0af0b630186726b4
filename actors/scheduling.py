"""Which Linux scheduling class a thread of ours runs in.

The threads the ingest wakes for every message (the EVSE actors, the listener hosts) run as
``SCHED_BATCH`` (:func:`run_as_batch_thread`). Linux gives a new thread the class of the
thread that starts it, so a thread that one of those may start (the clock's timer thread,
a site's actor, the mailer) puts itself back in the normal class first thing
(:func:`run_as_normal_thread`).
"""

from __future__ import annotations

import contextlib
import os

__all__ = ["run_as_batch_thread", "run_as_normal_thread"]


def run_as_batch_thread() -> bool:
    """Put the calling thread in Linux's ``SCHED_BATCH`` class; ``False`` where that is not
    available (another OS, a sandbox that forbids it).

    For the threads the ingest wakes for every message (the EVSE actors, the listener
    hosts): a ``SCHED_BATCH`` thread that is woken does not preempt the running thread, it
    runs when a CPU is free or the running thread's slice ends. The thread that woke it
    (the link's reader, an EVSE actor) holds the GIL and is about to give it up: preempting
    it only made the woken thread wait for the GIL and sleep again, two more thread
    switches. Measured with ``python -m bench ingest`` at a steady 2,000 msg/s: about 6 %
    less CPU per message and a shorter p99 lag (``docs/performance.md``). It needs no
    privilege (``sched(7)``), and the thread keeps its share of the CPU (same nice level).
    """
    with contextlib.suppress(AttributeError, OSError):
        os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))
        return True
    return False


def run_as_normal_thread() -> bool:
    """Put the calling thread back in the normal class (``SCHED_OTHER``), whatever class the
    thread that started it was in; ``False`` where that is not available."""
    with contextlib.suppress(AttributeError, OSError):
        os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
        return True
    return False
