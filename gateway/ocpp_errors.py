"""The OCPP 1.6 errors of the translator: CALLERRORs for frames that are not OCPP, the 1.6
names of the codes the ``ocpp`` library gets wrong, and the range checks it does not make."""

from __future__ import annotations

import json
from typing import Any

from ocpp.exceptions import (
    FormationViolationError,
    FormatViolationError,
    NotSupportedError,
    OCPPError,
    PropertyConstraintViolationError,
)
from ocpp.exceptions import (
    NotImplementedError as OcppNotImplemented,
)
from ocpp.messages import CallError

from gateway import ocpp_translate as tr

__all__ = ["check_meter_reading", "error_frame", "spec_error"]


def check_meter_reading(wh: int) -> None:
    if not 0 <= wh <= tr.MAX_ENERGY_WH:
        raise PropertyConstraintViolationError(
            details={"cause": f"a meter reading must be 0 to {tr.MAX_ENERGY_WH:.0e} Wh"}
        )


def error_frame(raw: Any, error: OCPPError) -> str:
    """A CALLERROR for a frame that could not be unpacked, echoing its unique id if any."""
    unique_id = "-1"
    try:
        decoded = json.loads(raw)
        if isinstance(decoded, list) and len(decoded) > 1 and isinstance(decoded[1], str):
            unique_id = decoded[1][:36]
    except (ValueError, TypeError):
        pass
    code = "FormationViolation" if isinstance(error, FormatViolationError) else error.code
    return CallError(unique_id, code, error.description, {}).to_json()


def spec_error(error: OCPPError, action: str) -> OCPPError:
    """The OCPP 1.6 error code for ``error``: ``FormationViolation`` (the library uses 2.0's
    ``FormatViolation``), ``NotImplemented`` for an action 1.6 does not know and
    ``NotSupported`` for a 1.6 action we do not handle (the library swaps the two)."""
    if isinstance(error, FormatViolationError):
        return FormationViolationError(description=error.description, details=error.details)
    if isinstance(error, NotSupportedError):
        return OcppNotImplemented(details={"cause": f"unknown action {action[:64]!r}"})
    if isinstance(error, OcppNotImplemented):
        return NotSupportedError(details={"cause": f"{action} is not supported by this CSMS"})
    return error
