"""The errors of the wire protocol: :func:`~protocol.codec.parse` raises nothing else."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from protocol.ids import StationId

__all__ = ["ProtocolError", "UnsupportedVersion"]


class ProtocolError(ValueError):
    """A topic or payload that does not follow protocol v2. The only error :func:`parse` raises."""


class UnsupportedVersion(ProtocolError):
    """A well-addressed message of another protocol version (a version 1 station).

    ``station_id`` is the station the topic names (already checked to be a valid id), so
    the CSMS can refuse that station by name and tell an operator."""

    def __init__(self, message: str, *, station_id: StationId, version: object) -> None:
        super().__init__(message)
        self.station_id = station_id
        self.version = version
