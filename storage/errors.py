"""Every error smartcharge raises on purpose, under one root: :class:`SmartchargeError`.

Why here, in the storage package: the layers (import-linter, ``setup.cfg``) are gateway ->
actors -> storage -> protocol, and a module can only be imported from its own layer or the
ones above. The storage layer is the lowest one that raises domain errors (a constraint
broken, a database out of reach), and the actors (unknown EVSE, time-out, conflicts) and the
gateway (authentication) sit above it, so this is the one place all of them can import.
The wire protocol stays below with its own :class:`protocol.ProtocolError`, which only its
parser raises and which never leaves the ingest path.

Import these from ``storage.errors`` (``storage`` also exports the storage errors, as part
of its public API); no other module re-exports them.

The gateway maps each class to an HTTP status in one table (:mod:`gateway.errors`); the
status each is meant to become is in its docstring.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from storage._leases import Lease

__all__ = [
    "ActorUnavailableError",
    "AuthError",
    "CommandTimeoutError",
    "Conflict",
    "ConstraintError",
    "DuplicateError",
    "EmailNotConfirmed",
    "EmailTaken",
    "FirebaseUnavailable",
    "Forbidden",
    "InvalidCredentials",
    "InvalidEmail",
    "InvalidLink",
    "InvalidToken",
    "LeaseHeldError",
    "LeaseLostError",
    "MigrationError",
    "NotFound",
    "SmartchargeError",
    "StationOfflineError",
    "StorageError",
    "StorageUnavailableError",
    "UnknownEvseError",
    "WeakPassword",
]


class SmartchargeError(Exception):
    """Root of every error the CSMS raises on purpose (HTTP 500 unless a subclass says)."""


# -- what a driver or an operator asked for ----------------------------------------------


class Conflict(SmartchargeError):
    """The EVSE or its station refuses what was asked (HTTP 409), with the reason."""


class Forbidden(SmartchargeError):
    """The caller may not do this (HTTP 403)."""


class NotFound(SmartchargeError, LookupError):
    """Nothing of the caller's there (HTTP 404): also what another driver's things look like."""


# -- the actors ----------------------------------------------------------------------------


class UnknownEvseError(SmartchargeError, LookupError):
    """No EVSE with that id is known to the CSMS (HTTP 404)."""


class CommandTimeoutError(SmartchargeError, TimeoutError):
    """The station did not answer a command in time (HTTP 504)."""


class ActorUnavailableError(SmartchargeError):
    """The actor that owns an EVSE is down or being restarted (HTTP 503)."""


class StationOfflineError(SmartchargeError):
    """The EVSE's station is not connected: the command was refused at once, never sent
    (HTTP 409, reason ``offline``), so it cannot run later when the station reconnects."""


# -- authentication ------------------------------------------------------------------------


class AuthError(SmartchargeError):
    """Root of the authentication errors (HTTP 401, with a ``Bearer`` challenge)."""


class InvalidCredentials(AuthError):
    """Unknown email or wrong password: one message for both (HTTP 401)."""

    def __init__(self) -> None:
        super().__init__("wrong email or password")


class InvalidToken(AuthError):
    """A token is malformed, forged, expired, revoked or reused (HTTP 401)."""


class EmailTaken(AuthError):
    """Registration with an email that already has an account (HTTP 409)."""


class WeakPassword(AuthError):
    """The password breaks the policy (HTTP 422)."""


class InvalidEmail(AuthError):
    """The email address is not plausible (HTTP 422)."""


class EmailNotConfirmed(AuthError):
    """The right password, but the email address is not confirmed yet (HTTP 403)."""

    def __init__(self) -> None:
        super().__init__("confirm your email address first: follow the link we mailed you")


class InvalidLink(AuthError):
    """A confirmation or password-reset link that is unknown, expired or used (HTTP 400)."""

    def __init__(self) -> None:
        super().__init__("this link is invalid, expired or already used; ask for a new one")


class FirebaseUnavailable(AuthError):
    """Firebase could not be reached or answered unexpectedly (HTTP 503)."""


# -- storage -------------------------------------------------------------------------------


class StorageError(SmartchargeError):
    """Root of every error the storage layer raises on purpose (HTTP 500, details logged,
    not shown)."""


class ConstraintError(StorageError):
    """A write broke a rule of the schema (an unknown user id, a second active reservation, ...)."""


class DuplicateError(ConstraintError):
    """A write would duplicate a unique value (an email, a token hash, an id)."""


class StorageUnavailableError(StorageError):
    """The database could not be reached, or stayed locked past the busy timeout (HTTP 503)."""


class MigrationError(StorageError):
    """The database schema cannot be brought to the version this code needs."""


class LeaseHeldError(StorageError):
    """Another holder has a live lease: ``lease`` says who, with which epoch, until when."""

    def __init__(self, lease: Lease) -> None:
        super().__init__(
            f"lease {lease.name!r} is held by {lease.holder} (epoch {lease.epoch}) "
            f"until {lease.expires_at} ms"
        )
        self.lease = lease


class LeaseLostError(StorageError):
    """Our lease is gone: another holder took it over with a higher epoch, or it was removed."""
