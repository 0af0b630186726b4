"""The storage exception hierarchy: one root, mapped to transport errors once, at the gateway."""

from __future__ import annotations

__all__ = [
    "ConstraintError",
    "DuplicateError",
    "MigrationError",
    "StorageError",
    "StorageUnavailableError",
]


class StorageError(Exception):
    """Root of every error the storage layer raises on purpose."""


class ConstraintError(StorageError):
    """A write broke a rule of the schema (an unknown user id, a second active reservation, ...)."""


class DuplicateError(ConstraintError):
    """A write would duplicate a unique value (an email, a token hash, an id)."""


class StorageUnavailableError(StorageError):
    """The database could not be reached, or stayed locked past the busy timeout."""


class MigrationError(StorageError):
    """The database schema cannot be brought to the version this code needs."""
