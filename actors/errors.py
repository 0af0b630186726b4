"""One exception root for the whole CSMS; the gateway maps each to an HTTP status once."""

from __future__ import annotations

__all__ = [
    "ActorUnavailableError",
    "CommandTimeoutError",
    "SmartchargeError",
    "StationOfflineError",
    "UnknownEvseError",
]


class SmartchargeError(Exception):
    """Root of every error the CSMS raises on purpose."""


class UnknownEvseError(SmartchargeError, LookupError):
    """No EVSE with that id is known to the CSMS (HTTP 404)."""


class CommandTimeoutError(SmartchargeError, TimeoutError):
    """The station did not answer a command in time (HTTP 504)."""


class ActorUnavailableError(SmartchargeError):
    """The actor that owns an EVSE is down or being restarted (HTTP 503)."""


class StationOfflineError(SmartchargeError):
    """The EVSE's station is not connected: the command was refused at once, never sent
    (HTTP 409, reason ``offline``), so it cannot run later when the station reconnects."""
