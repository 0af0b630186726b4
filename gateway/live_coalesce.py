"""Coalescing of a client's live events: the newest value per key wins, the rest keep order.

An operator's event stream (``/api/v1/events``) carries every EVSE change of the fleet: at
1,000 EVSEs that is more than a browser can paint, and a browser that reads slowly must not
make the server hold more and more. So each operator stream buffers in a :class:`Coalescer`:

- a **keyed** item (an ``evse`` event: its key is the EVSE id) replaces the one of the same
  key still waiting, and keyed items go out together at most once every ``interval_s``
  (250 ms: a few frames a second), the first at once;
- every other item (``station``, ``alert``, ``alert_ack``, ``notification``) is never
  replaced and goes out at the next take, in the order it came.

What waits is therefore at most one item per key (the number of EVSEs), plus the unkeyed
items not yet taken; a client so far behind that ``max_ordered`` unkeyed items wait is
``lagged``: the buffer is emptied and the client told to reload (``event: lagged``).

Pure logic with an injected clock (``clock()``: seconds that only go forward); the streams
that hold one (:mod:`gateway.events`, :mod:`gateway.asgi`) bring the locking and waiting.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Hashable
from typing import Final, Generic, TypeVar

from actors.evse_state import EvseState
from actors.live import LiveEvent

__all__ = ["COALESCE_S", "Coalescer", "evse_key"]

T = TypeVar("T")

COALESCE_S: Final = 0.25
"""Keyed items go out at most this often (seconds)."""
MAX_ORDERED: Final = 10_000


class Coalescer(Generic[T]):
    """One client's buffer (see the module docstring). Not thread-safe: its owner locks."""

    def __init__(
        self,
        key: Callable[[T], Hashable | None],
        *,
        interval_s: float = COALESCE_S,
        clock: Callable[[], float] = time.monotonic,
        max_ordered: int = MAX_ORDERED,
    ) -> None:
        self._key = key
        self._interval_s = interval_s
        self._clock = clock
        self._max_ordered = max_ordered
        self._latest: dict[Hashable, T] = {}
        self._ordered: deque[T] = deque()
        self._last_keyed = -math.inf
        self.lagged = False
        """Set when the buffer overflowed and was emptied; the owner clears it once told."""

    def __len__(self) -> int:
        """How many items wait."""
        return len(self._latest) + len(self._ordered)

    def put(self, item: T) -> None:
        key = self._key(item)
        if key is not None:
            self._latest.pop(key, None)  # the newest value, at the end of the order
            self._latest[key] = item
            return
        if len(self._ordered) >= self._max_ordered:
            self._latest.clear()
            self._ordered.clear()
            self.lagged = True
        self._ordered.append(item)

    def due_in(self) -> float | None:
        """Seconds until :meth:`take` has something to give (0: now); ``None``: nothing waits."""
        if self._ordered:
            return 0.0
        if not self._latest:
            return None
        return max(0.0, self._last_keyed + self._interval_s - self._clock())

    def take(self) -> list[T]:
        """What may go out now: the keyed items if their interval has passed (the newest per
        key), then the unkeyed ones in order."""
        out: list[T] = []
        if self._latest:
            now = self._clock()
            if now >= self._last_keyed + self._interval_s:
                out.extend(self._latest.values())
                self._latest.clear()
                self._last_keyed = now
        out.extend(self._ordered)
        self._ordered.clear()
        return out


def evse_key(event: LiveEvent) -> str | None:
    """An ``evse`` event's EVSE (the newest per EVSE wins); ``None`` for any other event."""
    if event.kind != "evse":
        return None
    data = event.data
    if isinstance(data, EvseState):
        return str(data.evse_id)
    found = data.get("evse_id", data.get("id"))
    return None if found is None else str(found)
