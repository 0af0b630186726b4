"""Who owns a charging session: the gateway registers ``session id -> driver`` *before*
it sends ``start``, so the session is attributed the moment the station opens it; the
listeners (recorders, the live feed) read it."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["SessionOwner", "SessionOwners"]


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionOwner:
    session_id: str
    driver_id: str | None
    reservation_id: str | None = None
    target_soc: float | None = None
    evse_id: str | None = None
    """Where it runs (what :class:`~actors.driver_quota.DriverQuota` reads in the view)."""


_MAX_LOOKED_UP = 10_000
"""Cached storage answers kept by :class:`SessionOwners` (then the cache starts again)."""


class SessionOwners:
    """Thread-safe ``session id -> owner``; written by the gateway, read by listeners.

    Entries of sessions that never opened (a start that timed out and never happened)
    would pile up, so entries older than ``keep_s`` are dropped; the stored session row
    (``lookup``) answers for long sessions after that.
    """

    def __init__(
        self,
        lookup: Callable[[str], str | None] | None = None,
        *,
        keep_s: float = 6 * 3600,
        monotonic: Callable[[], float] = time.monotonic,
        lookup_ttl_s: float = 30.0,
    ) -> None:
        """``lookup_ttl_s``: how long a storage answer (also "no driver") is reused: every
        meter value of a session asks, and a query per message costs more than the rest of
        its handling."""
        self._lock = threading.Lock()
        self._owners: dict[str, tuple[SessionOwner, float]] = {}
        self._by_driver: dict[str, dict[str, None]] = {}  # driver -> their session ids
        self._lookup = lookup
        self._lookup_ttl_s = lookup_ttl_s
        self._looked_up: dict[str, tuple[str | None, float]] = {}
        self._keep_s = keep_s
        self._monotonic = monotonic

    def expect(self, owner: SessionOwner) -> None:
        now = self._monotonic()
        with self._lock:
            self._owners[owner.session_id] = (owner, now)
            if owner.driver_id is not None:
                self._by_driver.setdefault(owner.driver_id, {})[owner.session_id] = None
            oldest = next(iter(self._owners.values()))[1]
            if now - oldest > self._keep_s:
                self._owners = {k: v for k, v in self._owners.items() if now - v[1] <= self._keep_s}
                self._by_driver = {}
                for sid, (kept, _) in self._owners.items():
                    if kept.driver_id is not None:
                        self._by_driver.setdefault(kept.driver_id, {})[sid] = None

    def get(self, session_id: str) -> SessionOwner | None:
        with self._lock:
            found = self._owners.get(session_id)
        return None if found is None else found[0]

    def sessions_of(self, driver_id: str) -> list[tuple[SessionOwner, float]]:
        """The driver's sessions still remembered, each with when it was registered (the
        ``monotonic`` clock's seconds): in memory only, never a query."""
        with self._lock:
            sids = self._by_driver.get(driver_id, {})
            return [self._owners[sid] for sid in sids if sid in self._owners]

    def driver_of(self, session_id: str | None) -> str | None:
        """The driver of a session, from memory or (after a restart) from storage."""
        if session_id is None:
            return None
        owner = self.get(session_id)
        if owner is not None:
            return owner.driver_id
        if self._lookup is None:
            return None
        now = self._monotonic()
        with self._lock:
            cached = self._looked_up.get(session_id)
        if cached is not None and now - cached[1] < self._lookup_ttl_s:
            return cached[0]
        driver = self._lookup(session_id)
        with self._lock:
            if len(self._looked_up) >= _MAX_LOOKED_UP:
                self._looked_up.clear()
            self._looked_up[session_id] = (driver, now)
        return driver

    def forget(self, session_id: str) -> None:
        with self._lock:
            found = self._owners.pop(session_id, None)
            if found is not None and found[0].driver_id is not None:
                mine = self._by_driver.get(found[0].driver_id, {})
                mine.pop(session_id, None)
                if not mine:
                    self._by_driver.pop(found[0].driver_id, None)
