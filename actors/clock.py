"""One injectable clock for the whole CSMS: wall time, monotonic time and timers.

Every time read and every timer in :mod:`actors` goes through a :class:`Clock`, handed down
by the composition root (:func:`actors.system.build_csms`). In production that is a
:class:`SystemClock` (the host's clocks, timers on one :class:`~actors.timers.Timers`
thread); tests pass a :class:`ManualClock`, whose time moves only in :meth:`ManualClock.advance`,
so a reservation's expiry or a command's time-out happens when the test says, not after a
real wait.

Which thread runs a timer's callback: :class:`SystemClock`, the timer thread;
:class:`ManualClock`, the thread that calls :meth:`~ManualClock.advance`. Either way a
callback must only ``tell`` an actor (or set a future): never block, never ``ask``.

Not on this clock, on purpose: the staleness check of the wire decoder
(:mod:`actors.bridge`, which can run in the MQTT child process) compares a station's stamp
with the host's real clock, and :mod:`actors.mqtt_link` bounds real waits for a process.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Callable
from typing import Protocol

from actors.timers import TimerHandle, Timers

__all__ = ["Clock", "ManualClock", "Scheduler", "SystemClock", "TimerHandle"]


class Scheduler(Protocol):
    """Where a timer is set: a :class:`Clock`, or a bare :class:`~actors.timers.Timers`."""

    def call_later(self, delay_s: float, callback: Callable[[], None]) -> TimerHandle:
        """Run ``callback`` once, ``delay_s`` from now; ``.cancel()`` the handle to drop it."""
        ...


class Clock(Scheduler, Protocol):
    """What the CSMS reads time from and schedules on."""

    def time_s(self) -> float:
        """Wall-clock seconds since the epoch (UTC)."""
        ...

    def time_ms(self) -> int:
        """Wall-clock epoch milliseconds: every stored and published time."""
        ...

    def monotonic(self) -> float:
        """Seconds that only go forward: durations, windows, rate limits."""
        ...


class SystemClock:
    """The host's clocks; timers on one :class:`Timers` thread, started on the first timer.

    :meth:`close` stops that thread (a timer set afterwards starts a new one), so a CSMS that
    built its own clock stops it with the actors.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._timers: Timers | None = None

    def time_s(self) -> float:
        return time.time()

    def time_ms(self) -> int:
        return time.time_ns() // 1_000_000

    def monotonic(self) -> float:
        return time.monotonic()

    def call_later(self, delay_s: float, callback: Callable[[], None]) -> TimerHandle:
        with self._lock:
            if self._timers is None:
                self._timers = Timers(time.monotonic)
            timers = self._timers
        return timers.call_later(delay_s, callback)

    def close(self) -> None:
        with self._lock:
            timers, self._timers = self._timers, None
        if timers is not None:
            timers.stop()


class ManualClock:
    """A clock that moves only when a test calls :meth:`advance`.

    ``start_s``: the wall time it starts at (default: the real time now, so that stamps of
    live stations, which use the real clock, stay plausible).
    """

    def __init__(self, start_s: float | None = None) -> None:
        self._wall0 = time.time() if start_s is None else start_s
        self._elapsed = 0.0
        self._heap: list[TimerHandle] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()

    def time_s(self) -> float:
        with self._cond:
            return self._wall0 + self._elapsed

    def time_ms(self) -> int:
        return int(self.time_s() * 1000)

    def monotonic(self) -> float:
        with self._cond:
            return self._elapsed

    def call_later(self, delay_s: float, callback: Callable[[], None]) -> TimerHandle:
        with self._cond:
            handle = TimerHandle(self._elapsed + max(0.0, delay_s), next(self._seq), callback)
            heapq.heappush(self._heap, handle)
            self._cond.notify_all()
        return handle

    def advance(self, seconds: float) -> int:
        """Move time on by ``seconds``, running every timer that falls due, in deadline order,
        on this thread (a timer set by a callback runs too if it falls due in the window).
        Returns how many callbacks ran."""
        ran = 0
        with self._cond:
            target = self._elapsed + seconds
        while True:
            with self._cond:
                due = self._pop_due(target)
                if due is None:
                    self._elapsed = max(self._elapsed, target)
                    return ran
                self._elapsed = max(self._elapsed, due.deadline)
            due.callback()
            ran += 1

    def pending(self) -> list[float]:
        """The delays (seconds from now) of the timers not yet run nor cancelled, soonest first."""
        with self._cond:
            return sorted(h.deadline - self._elapsed for h in self._heap if not h.cancelled)

    def wait_for_timer(self, *, at_least_s: float = 0.0, timeout: float = 10.0) -> bool:
        """Block until a pending timer is due ``at_least_s`` or more from now (or ``timeout``
        real seconds pass: then ``False``). How a test knows an actor has set its timer
        before it advances the clock past it."""

        def armed() -> bool:
            return any(
                not h.cancelled and h.deadline - self._elapsed >= at_least_s for h in self._heap
            )

        with self._cond:
            return self._cond.wait_for(armed, timeout=timeout)

    def _pop_due(self, target: float) -> TimerHandle | None:
        while self._heap and self._heap[0].cancelled:
            heapq.heappop(self._heap)
        if self._heap and self._heap[0].deadline <= target:
            return heapq.heappop(self._heap)
        return None
