"""The store interfaces the CSMS depends on, as :class:`typing.Protocol`\\ s.

The actors and the gateway are typed against these, not against a backend: the SQL stores
(``storage._charging`` and friends, grouped by :class:`storage.Storage`) satisfy every one,
and the Firebase Realtime Database stores (:mod:`storage.firebase_rtdb`) satisfy
:class:`Sessions` and :class:`Notifications`, the two that can live there. mypy checks
each backend against them where the composition root takes them
(:class:`actors.system.CsmsConfig`, :func:`actors.system.build_csms`).

Each protocol lists what its callers use, not everything a backend offers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from storage._alerts import Alert, Severity
from storage._metrics import EvseSample, MetricsSummary
from storage._records import (
    EvseStateRow,
    Notification,
    Reservation,
    ReservationOutcome,
    Session,
    StatusEvent,
)

__all__ = [
    "Alerts",
    "CsmsStores",
    "EvseStates",
    "MetricSamples",
    "Notifications",
    "Reservations",
    "Sessions",
    "StatusEvents",
]


class Sessions(Protocol):
    """Charging sessions: written by the session recorder, read by the driver API."""

    def open(
        self,
        session_id: str,
        *,
        evse_id: str,
        station_id: str,
        started_at: int | None = None,
        start_energy_wh: float = 0.0,
        driver_id: str | None = None,
        target_soc: float | None = None,
        reservation_id: str | None = None,
    ) -> Session: ...

    def update_progress(self, session_id: str, energy_wh: float, power_w: float) -> bool: ...

    def close(self, session_id: str, ended_at: int, energy_wh: float, end_reason: str) -> bool: ...

    def get(self, session_id: str) -> Session | None: ...

    def open_for_evse(self, evse_id: str) -> Session | None: ...

    def by_driver(
        self, driver_id: str, limit: int = 50, before: int | None = None
    ) -> list[Session]: ...

    def open_sessions(self) -> list[Session]: ...


class Notifications(Protocol):
    """A driver's (or the operators') notifications: written by the notifier."""

    def add(
        self,
        user_id: str,
        kind: str,
        message: str,
        data: Mapping[str, Any] | None = None,
        *,
        at: int | None = None,
    ) -> Notification: ...

    def for_user(
        self, user_id: str, limit: int = 50, after_id: int | None = None
    ) -> list[Notification]: ...

    def unread_count(self, user_id: str) -> int: ...

    def mark_read(self, user_id: str, ids: Iterable[int], at: int | None = None) -> int: ...


class Reservations(Protocol):
    """Reservation rows: written only by the reservation actor."""

    def create(
        self,
        driver_id: str,
        evse_id: str,
        expires_at: int,
        *,
        reservation_id: str | None = None,
        created_at: int | None = None,
    ) -> Reservation: ...

    def active(self) -> list[Reservation]: ...

    def finish(
        self,
        reservation_id: str,
        at: int,
        outcome: ReservationOutcome | str,
        reason: str | None = None,
    ) -> bool: ...


class EvseStates(Protocol):
    """The last known state of each EVSE: written by the state recorder, read at start-up."""

    def put_many(self, states: Iterable[EvseStateRow]) -> int: ...

    def remove(self, evse_ids: Iterable[str]) -> int: ...

    def all(self) -> list[EvseStateRow]: ...


class StatusEvents(Protocol):
    """Each EVSE's status history: appended by the state recorder."""

    def add_many(self, events: Iterable[StatusEvent]) -> int: ...


class MetricSamples(Protocol):
    """Raw and downsampled EVSE samples: written by the metrics recorder, read by the API."""

    def add_many(self, samples: Iterable[EvseSample]) -> int: ...

    def downsample(self, older_than_ms: int, bucket_ms: int) -> int: ...

    def summary(self, days: int = 30, utilisation_ms: int = ...) -> MetricsSummary: ...


class Alerts(Protocol):
    """The operators' alert log: written by the node's alert log, read by the gateways."""

    def add(
        self,
        kind: str,
        severity: Severity,
        message: str,
        *,
        at: int,
        station_id: str | None = None,
        evse_id: str | None = None,
    ) -> Alert: ...

    def ack(self, alert_id: int, by: str, at: int | None = None) -> Alert | None: ...

    def last_liveness(self) -> dict[str, str]: ...

    def prune(self, *, before: int, keep: int) -> int: ...


class CsmsStores(Protocol):
    """Every store the running CSMS writes or reads (:func:`actors.system.build_csms`)."""

    @property
    def sessions(self) -> Sessions: ...

    @property
    def notifications(self) -> Notifications: ...

    @property
    def reservations(self) -> Reservations: ...

    @property
    def evse_states(self) -> EvseStates: ...

    @property
    def status_events(self) -> StatusEvents: ...

    @property
    def metrics(self) -> MetricSamples: ...

    @property
    def alerts(self) -> Alerts: ...
