"""Sliding-window rate limits, e.g. for login attempts per client IP and per email.

A window keeps the time of each allowed hit (at most ``limit`` per key), so the limit holds
over *any* ``window_s`` span, not just aligned ones. Refused hits are not recorded: a client
that waits the returned Retry-After gets through. Memory stays bounded: keys whose hits have
all left the window are dropped, and beyond ``max_keys`` the least recently hit keys go.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable

__all__ = ["LoginThrottle", "SlidingWindowLimiter"]


class SlidingWindowLimiter:
    """At most ``limit`` hits per key within any ``window_s`` seconds; thread-safe."""

    def __init__(
        self,
        limit: int,
        window_s: float,
        clock: Callable[[], float] = time.monotonic,
        *,
        max_keys: int = 10_000,
    ) -> None:
        if limit < 1 or window_s <= 0 or max_keys < 1:
            raise ValueError("limit and max_keys must be >= 1 and window_s > 0")
        self.limit = limit
        self.window_s = window_s
        self._clock = clock
        self._max_keys = max_keys
        self._lock = threading.Lock()
        # key -> times of its allowed hits, oldest first; keys ordered by their last hit.
        self._hits: OrderedDict[Hashable, deque[float]] = OrderedDict()

    def hit(self, key: Hashable) -> float | None:
        """Count a hit: None if allowed, else the seconds to wait (for ``Retry-After``)."""
        with self._lock:
            now = self._clock()
            self._evict(now)
            hits = self._hits.get(key)
            if hits is None:
                hits = self._hits[key] = deque()
            while hits and hits[0] <= now - self.window_s:
                hits.popleft()
            if len(hits) >= self.limit:
                return hits[0] + self.window_s - now
            hits.append(now)
            self._hits.move_to_end(key)
            return None

    def reset(self, key: Hashable) -> None:
        """Forget a key's hits (say, after a successful login)."""
        with self._lock:
            self._hits.pop(key, None)

    def __len__(self) -> int:
        """How many keys are tracked (bounded by ``max_keys``)."""
        return len(self._hits)

    def _evict(self, now: float) -> None:
        # Keys are ordered by last allowed hit, so expired ones sit at the front.
        while self._hits:
            key, hits = next(iter(self._hits.items()))
            if len(self._hits) < self._max_keys and (hits and hits[-1] > now - self.window_s):
                return
            del self._hits[key]


class LoginThrottle:
    """Login attempts: ``per_ip`` per client address and ``per_email`` per account.

    Defaults: 20 per minute per IP (a shared NAT still works), 5 per minute per email (a
    password guesser spread over many IPs is still slowed down on each account).
    """

    def __init__(
        self,
        per_email: SlidingWindowLimiter | None = None,
        per_ip: SlidingWindowLimiter | None = None,
    ) -> None:
        self.per_email = per_email if per_email is not None else SlidingWindowLimiter(5, 60.0)
        self.per_ip = per_ip if per_ip is not None else SlidingWindowLimiter(20, 60.0)

    def attempt(self, ip: str, email: str) -> float | None:
        """None if this attempt may proceed, else seconds until it may (``Retry-After``)."""
        wait = self.per_ip.hit(ip)
        if wait is not None:
            return wait
        return self.per_email.hit(email.strip().lower())

    def succeeded(self, email: str) -> None:
        """A correct password clears the account's counter (the IP's stays)."""
        self.per_email.reset(email.strip().lower())
