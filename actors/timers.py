"""A single timer thread for all deadlines (command time-outs, later reservation counts).

One thread and a heap instead of a ``threading.Timer`` (one thread) per pending
command. Callbacks run on the timer thread, so they must only ``tell`` actors.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from actors.scheduling import run_as_normal_thread

__all__ = ["TimerHandle", "Timers"]

log = logging.getLogger(__name__)


@dataclass(order=True)
class TimerHandle:
    deadline: float
    seq: int
    callback: Callable[[], None] = field(compare=False)
    cancelled: bool = field(default=False, compare=False)

    def cancel(self) -> None:
        self.cancelled = True


class Timers:
    """Run callbacks at monotonic deadlines, on one daemon thread."""

    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._monotonic = monotonic
        self._heap: list[TimerHandle] = []
        self._cond = threading.Condition()
        self._counter = itertools.count()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="timers", daemon=True)
        self._thread.start()

    def call_later(self, delay_s: float, callback: Callable[[], None]) -> TimerHandle:
        handle = TimerHandle(self._monotonic() + delay_s, next(self._counter), callback)
        with self._cond:
            heapq.heappush(self._heap, handle)
            self._cond.notify()
        return handle

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        run_as_normal_thread()  # started lazily, maybe by an EVSE actor (actors.scheduling)
        while True:
            with self._cond:
                while not self._stopped:
                    if self._heap and self._heap[0].cancelled:
                        heapq.heappop(self._heap)
                        continue
                    wait = self._heap[0].deadline - self._monotonic() if self._heap else None
                    if wait is not None and wait <= 0:
                        break
                    self._cond.wait(timeout=wait)
                if self._stopped:
                    return
                due = heapq.heappop(self._heap)
            try:
                due.callback()
            except Exception:
                log.exception("timer callback failed")
