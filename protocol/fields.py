"""Typed, range-checked reads of JSON object fields: every failure is a :class:`ProtocolError`.

Shared by the parser (:mod:`protocol.codec`) and the command arguments
(:mod:`protocol.commands`). A JSON boolean is never taken for a number.
"""

from __future__ import annotations

import math
from enum import StrEnum
from typing import Any

from protocol.errors import ProtocolError
from protocol.ids import valid_id

__all__ = ["enum_field", "get_field", "id_field", "int_field", "number_field"]


def get_field(
    body: dict[str, Any],
    key: str,
    kind: type | tuple[type, ...],
    *,
    optional: bool = False,
    default: Any = None,
) -> Any:
    """``body[key]`` if it is a ``kind`` (not a boolean unless ``kind`` says so); a missing or
    ``null`` field is ``default`` when ``optional``."""
    value = body.get(key)
    if value is None:
        if optional:
            return default
        raise ProtocolError(f"missing field {key!r}")
    if not isinstance(value, kind):
        raise ProtocolError(f"field {key!r} must be {_kind_name(kind)}")
    if value.__class__ is bool and kind is not bool and bool not in _as_tuple(kind):
        raise ProtocolError(f"field {key!r} must be {_kind_name(kind)}, not a boolean")
    return value


def _as_tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _kind_name(kind: type | tuple[type, ...]) -> str:
    return " or ".join(k.__name__ for k in _as_tuple(kind))


def number_field(
    body: dict[str, Any],
    key: str,
    *,
    lo: float,
    hi: float,
    optional: bool = False,
    default: float | None = None,
) -> Any:
    """A finite JSON number in ``[lo, hi]``, as a float."""
    value = get_field(body, key, (int, float), optional=optional, default=default)
    if value is None:
        return None
    # Range first: math.isfinite() raises OverflowError on a huge JSON integer.
    if not lo <= value <= hi or not math.isfinite(value):
        raise ProtocolError(f"field {key!r} out of range [{lo}, {hi}]: {value!r}")
    return float(value)


def int_field(body: dict[str, Any], key: str, *, lo: int = 0, hi: int = 2**63 - 1) -> int:
    """A JSON integer in ``[lo, hi]``."""
    value = get_field(body, key, int)
    if not lo <= value <= hi:
        raise ProtocolError(f"field {key!r} out of range: {value!r}")
    return int(value)


def id_field(body: dict[str, Any], key: str, *, optional: bool = False) -> Any:
    """A string that is a :func:`~protocol.ids.valid_id`."""
    value = get_field(body, key, str, optional=optional)
    if value is not None and not valid_id(value):
        raise ProtocolError(f"field {key!r} is not a valid id: {value!r}")
    return value


def enum_field(
    body: dict[str, Any], key: str, enum: type[StrEnum], *, optional: bool = False
) -> Any:
    """A string that is a value of ``enum``, as its member."""
    value = get_field(body, key, str, optional=optional)
    if value is None:
        return None
    try:
        return enum(value)
    except ValueError:
        raise ProtocolError(f"field {key!r} has unknown value {value!r}") from None
