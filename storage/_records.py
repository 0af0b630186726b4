"""Typed, immutable rows: what the stores return.

Every time is an ``int`` of epoch milliseconds in UTC (the database holds ``BIGINT``): drivers
for SQLite give back naive datetimes, and integers sort, compare and cross processes without a
time zone to lose.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

__all__ = [
    "EvseStateRow",
    "Notification",
    "RefreshToken",
    "Reservation",
    "ReservationOutcome",
    "Role",
    "Session",
    "StatusEvent",
    "User",
]


class Role(StrEnum):
    DRIVER = "driver"
    OPERATOR = "operator"


class ReservationOutcome(StrEnum):
    """How a reservation ended; an active reservation has none."""

    USED = "used"
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"


@dataclass(frozen=True, slots=True, kw_only=True)
class User:
    id: str
    email: str
    password_hash: str
    role: Role
    created_at: int
    token_version: int = 0
    """Access tokens of another version are refused on writes (bumped by disable/delete)."""
    disabled_at: int | None = None
    """Set when the account was disabled or deleted: it can no longer log in or write."""
    confirmed_at: int | None = None
    """When the user proved the email address is theirs (None: not yet, see
    ``gateway.account_mail``); accounts made without mail count as confirmed at creation."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RefreshToken:
    token_hash: str
    user_id: str
    family_id: str
    created_at: int
    expires_at: int
    used_at: int | None = None
    revoked_at: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Session:
    """A charging session. ``driver_id`` is None when the dashboard or the station started it."""

    id: str
    driver_id: str | None
    evse_id: str
    station_id: str
    started_at: int
    start_energy_wh: float
    energy_wh: float
    """Energy delivered in this session so far (not the meter reading)."""
    peak_power_w: float
    target_soc: float | None = None
    ended_at: int | None = None
    end_reason: str | None = None
    reservation_id: str | None = None

    @property
    def is_open(self) -> bool:
        return self.ended_at is None


@dataclass(frozen=True, slots=True, kw_only=True)
class Reservation:
    id: str
    driver_id: str
    evse_id: str
    created_at: int
    expires_at: int
    ended_at: int | None = None
    outcome: ReservationOutcome | None = None
    reason: str | None = None

    @property
    def is_active(self) -> bool:
        """Not finished yet. Whether it has expired is the reservation countdown's call."""
        return self.ended_at is None


@dataclass(frozen=True, slots=True, kw_only=True)
class Notification:
    id: int
    user_id: str
    kind: str
    message: str
    data: dict[str, Any] = field(default_factory=dict, hash=False)
    created_at: int
    read_at: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class EvseStateRow:
    """An EVSE's last known state: ``state`` and ``station`` are JSON objects the CSMS defines."""

    evse_id: str
    station_id: str
    state: dict[str, Any] = field(hash=False)
    station: dict[str, Any] | None = field(default=None, hash=False)
    updated_at: int


@dataclass(frozen=True, slots=True, kw_only=True)
class StatusEvent:
    """One status change of an EVSE (``id`` is 0 until stored)."""

    evse_id: str
    ts: int
    from_status: str | None
    to_status: str
    session_id: str | None = None
    id: int = 0
