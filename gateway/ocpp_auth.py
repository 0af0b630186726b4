"""RFID idTags at OCPP charge points: whose card it is, and whether a start may go on.

:class:`TagAuthority` answers the translator's Authorize and the StartTransactions the CSMS did
not ask for (a driver badged at the charger), from the tags drivers registered
(``storage.IdTagStore``, ``/api/v1/me/tags``):

- an unknown tag is ``Invalid``; the tag of a disabled account ``Blocked`` (a deleted account's
  tags are removed with it, so they are unknown);
- a start on a connector reserved for another driver is ``Invalid`` (a reserved connector only
  for its holder, as the app's start);
- a driver who already runs as many sessions as one may (``smartcharge csms
  --max-sessions-per-driver``) gets ``ConcurrentTx``: their open sessions, and their badge
  starts of the last :data:`SETTLE_MS` the CSMS has not recorded yet;
- otherwise ``Accepted``, and the session's driver is stored *before* the translator tells the
  CSMS about the session, so the CSMS attributes it (its history, live views, billing) as it
  does an app start.

Every call is blocking (storage): the translator runs them in a thread, one at a time (the
lock), so two badge starts of one driver cannot both see "none running".
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from ocpp.v16.enums import AuthorizationStatus

__all__ = ["SETTLE_MS", "Admission", "TagAuthority"]

log = logging.getLogger("gateway.ocpp")

SETTLE_MS: Final = 60_000
"""A badge start counts against its driver's sessions for this long before the CSMS's session
row exists (it is written within a second or two of the first report)."""


@dataclass(frozen=True, slots=True)
class Admission:
    status: AuthorizationStatus
    driver_id: str | None = None


class TagAuthority:
    """``storage``: a :class:`storage.Storage`; ``lock``: the one guarding it in the translator."""

    def __init__(
        self,
        storage: Any,
        lock: threading.Lock,
        *,
        max_sessions: int = 1,
        clock_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
    ) -> None:
        self._storage = storage
        self._lock = lock
        self.max_sessions = max_sessions
        self._clock_ms = clock_ms

    def authorize(self, id_tag: str) -> AuthorizationStatus:
        with self._lock:
            holder = self._storage.id_tags.holder(id_tag)
        if holder is None:
            return AuthorizationStatus.invalid
        return AuthorizationStatus.accepted if holder.enabled else AuthorizationStatus.blocked

    def admit(
        self, id_tag: str, *, session_id: str, evse_id: str, reservation_id: str | None
    ) -> Admission:
        """Whether a start by badge may go on; if so, its driver is stored for ``session_id``.
        ``reservation_id``: ours, if the connector shows one; an active reservation of
        ``evse_id`` in storage counts as well."""
        with self._lock:
            tags = self._storage.id_tags
            holder = tags.holder(id_tag)
            if holder is None:
                return Admission(AuthorizationStatus.invalid)
            if not holder.enabled:
                return Admission(AuthorizationStatus.blocked)
            driver = holder.driver_id
            # the reservation the CSMS holds decides, whatever the connector shows now (a
            # charger may report Preparing at a plug-in; a restarted translator forgot it)
            reservation = self._storage.reservations.active_for_evse(evse_id)
            if reservation is not None and reservation.expires_at <= self._clock_ms():
                reservation = None  # expired: the CSMS ends it at its next tick
            if reservation is None and reservation_id is not None:
                reservation = self._storage.reservations.get(reservation_id)
            if reservation is not None and reservation.driver_id != driver:
                log.info("OCPP: badge start on %s reserved for someone else", evse_id)
                return Admission(AuthorizationStatus.invalid)
            reservation_id = None if reservation is None else reservation.id
            since = self._clock_ms() - SETTLE_MS
            if tags.running_sessions(driver, since) >= self.max_sessions:
                return Admission(AuthorizationStatus.concurrent_tx)
            tags.record_start(
                session_id,
                driver_id=driver,
                id_tag=id_tag,
                evse_id=evse_id,
                reservation_id=reservation_id,
            )
        return Admission(AuthorizationStatus.accepted, driver)
