"""What the CSMS knows of one EVSE: an immutable record, changed only by
:func:`actors.evse_transition.transition`.

The record composes the EVSE's description as its station gives it (a
:class:`~protocol.EvseDescriptor`: its own id, connector and rating) with the
:class:`~protocol.EvseValues` the station reports, and adds what only the CSMS keeps
(report order, the status before a lost connection, a CSMS-made fault).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from protocol import (
    EvseDescriptor,
    EvseId,
    EvseInfo,
    EvseStatus,
    EvseValues,
    StationId,
    evse_key,
    evse_values,
)

__all__ = ["SESSION_STATUSES", "EvseState"]

S = EvseStatus

SESSION_STATUSES: Final = frozenset({S.CHARGING, S.SUSPENDED_EV, S.SUSPENDED_EVSE})


@dataclass(frozen=True, slots=True, kw_only=True)
class EvseState(EvseValues):
    """What the CSMS knows of one EVSE. ``epoch``/``seq``/``ts`` are the last accepted
    report's. :attr:`evse_id` is the CSMS-wide id (:func:`~protocol.evse_key`:
    ``station.evse``); the station's own id for the EVSE is ``descriptor.id``."""

    station_id: StationId
    descriptor: EvseDescriptor
    status: EvseStatus = S.OFFLINE
    status_before_offline: EvseStatus | None = None
    seq: int = -1
    ts: int = -1
    faulted_by_csms: bool = False
    epoch: int = -1
    station_online: bool = False
    """The station's birth came after its last offline message (its EVSE may still show
    ``Offline`` until its first status report)."""

    @property
    def evse_id(self) -> EvseId:
        """The CSMS-wide id, ``station.evse``."""
        return evse_key(self.station_id, self.descriptor.id)

    @property
    def reachable(self) -> bool:
        """Commands can reach the station now (else they are refused, never queued)."""
        return self.status is not S.OFFLINE or self.station_online

    @property
    def session_open(self) -> bool:
        """A session is open while charging or suspended (also while offline from there)."""
        effective = self.status_before_offline if self.status is S.OFFLINE else self.status
        return effective in SESSION_STATUSES

    def info(self) -> EvseInfo:
        """The state as a station would report it (with the station's own EVSE id)."""
        return EvseInfo(evse_id=self.descriptor.id, **evse_values(self))
