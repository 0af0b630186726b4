"""A simulated EVSE's records: what never changes in a run (:class:`EvseSpec`), what does
(:class:`EvseState`) and what its pure functions (:mod:`simulator.evse`) return."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from protocol import (
    EvseDescriptor,
    EvseId,
    EvseInfo,
    EvseStatus,
    EvseValues,
    RejectReason,
    evse_values,
)
from simulator.physics import Car

__all__ = ["EventKind", "EvseEvent", "EvseSpec", "EvseState", "Outcome"]


class EventKind(StrEnum):
    STATUS = "status"
    METER = "meter"


@dataclass(frozen=True, slots=True, kw_only=True)
class EvseSpec:
    """What never changes for an EVSE during a run: its station's description of it, and
    how it is simulated."""

    descriptor: EvseDescriptor
    rng_key: str
    meter_interval: float = 5.0

    @property
    def evse_id(self) -> EvseId:
        return self.descriptor.id


@dataclass(frozen=True, slots=True, kw_only=True)
class EvseState(EvseValues):
    """Everything that changes (the reported :class:`~protocol.EvseValues` and what only
    the simulation keeps); times are simulated epoch seconds."""

    evse_id: EvseId
    status: EvseStatus = EvseStatus.AVAILABLE
    car: Car | None = None
    reservation_expires_at: int | None = None
    last_sample_at: float | None = None
    unplug_at: float | None = None
    draws: int = 0
    limit_w: float | None = None
    """The power limit in force (``set_limit``), W; ``None``: never limited, charge at max."""
    limit_expires_at: int | None = None
    """When ``limit_w`` lapses to ``fallback_w``, epoch ms of the simulated clock."""
    fallback_w: float | None = None
    """The limit after ``limit_expires_at`` (``None``: the EVSE's ``min_power_w``)."""

    def info(self) -> EvseInfo:
        """The wire view (rounded: a monotonic value stays monotonic when rounded)."""
        values = evse_values(self)
        values.update(
            soc=None if self.soc is None else round(self.soc, 2),
            power_w=round(self.power_w),
            energy_wh=round(self.energy_wh, 1),
            session_energy_wh=round(self.session_energy_wh, 1),
        )
        return EvseInfo(evse_id=self.evse_id, **values)

    def report_key(self) -> tuple[object, ...]:
        """The fields whose change deserves a status report (meter progress does not)."""
        return (
            self.status,
            self.session_id,
            self.reservation_id,
            self.maintenance,
            self.maintenance_pending,
            self.stop_reason,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class EvseEvent:
    """Something to publish: a status report or a meter sample, as of ``at``."""

    kind: EventKind
    at: float
    state: EvseState


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    state: EvseState
    reason: RejectReason | None = None
    events: tuple[EvseEvent, ...] = ()
