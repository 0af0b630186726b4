"""Clocks the simulator reads time from: injected, so a run can be fast or replayable.

The station logic never calls :func:`time.time`; it asks a :class:`Clock`.
A station reads two: the simulated clock for its physics (:class:`SimClock`,
optionally accelerated with ``--speed``) and the real wall clock for what the
CSMS compares with its own clock: wire timestamps, the boot epoch and command
expiry (:class:`WallClock`). :class:`ManualClock` lets tests move either by
hand, with no sleeps.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol, runtime_checkable

__all__ = ["Clock", "ManualClock", "SimClock", "WallClock"]


@runtime_checkable
class Clock(Protocol):
    """Anything with ``now()``: simulated seconds since the Unix epoch."""

    def now(self) -> float: ...


class SimClock:
    """Simulated wall time that advances ``speed`` times faster than real time.

    It starts at ``start`` (default: the real wall time) and is derived from
    :func:`time.monotonic`, so a jump of the system clock does not jump the
    simulation. Safe to read from any thread (it holds no mutable state).
    """

    def __init__(self, speed: float = 1.0, *, start: float | None = None) -> None:
        if not speed > 0:
            raise ValueError(f"speed must be positive, not {speed!r}")
        self.speed = float(speed)
        self._start = time.time() if start is None else float(start)
        self._mono0 = time.monotonic()

    def now(self) -> float:
        return self._start + (time.monotonic() - self._mono0) * self.speed

    def real_seconds(self, sim_seconds: float) -> float:
        """How long ``sim_seconds`` of simulated time take in real time."""
        return sim_seconds / self.speed


class WallClock:
    """The real wall clock (:func:`time.time`): what the CSMS's clock also reads."""

    def now(self) -> float:
        return time.time()


class ManualClock:
    """A clock that only moves when told to: tests drive it with :meth:`advance`."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = float(start)
        self._lock = threading.Lock()

    def now(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> float:
        """Move time forward (never backwards) and return the new time."""
        if seconds < 0:
            raise ValueError("a clock never goes backwards")
        with self._lock:
            self._now += seconds
            return self._now
