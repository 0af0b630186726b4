"""Cheaper per-message work in the ``ocpp`` library, with the same results (``docs/ocpp.md``).

The library validates every CALL and CALLRESULT against the OCPP JSON schemas with
``jsonschema``'s ``Draft4Validator``: about 0.16 ms for one MeterValues, the largest part of
the translator's CPU per message. :func:`install` makes it ask a compiled validator of the same
Draft 4 schema first (``jsonschema_rs``, about 2 µs) and its own only when that one finds the
payload invalid (or cannot read it), so every error, and so every CALLERROR code a charge point
gets, is exactly the library's own. Formats (``date-time``) are not checked, as the library's
validator does not check them either. The three OCPP 1.6 schemas the library reads with
``decimal.Decimal`` numbers keep its validator alone.

It also remembers the library's camelCase <-> snake_case conversion of each key (two regular
expressions per key per message otherwise): the same function, asked once per key; and
:func:`remember_signatures` gives a ChargePoint class's handlers their signature once (the
library asks ``inspect.signature`` of the handler at every message, which unwraps its
decorator each time).

Process-wide: the translator calls :func:`install` once at start (``gateway.ocpp_server``).
"""

from __future__ import annotations

import functools
import inspect
import threading
from typing import Any, Final

import jsonschema_rs
import ocpp.charge_point as ocpp_charge_point
import ocpp.messages as ocpp_messages

__all__ = ["CompiledFirstValidator", "install", "remember_signatures"]

KEYS_REMEMBERED: Final = 4096
"""Keys whose case conversion is remembered (OCPP 1.6 has a few hundred)."""

_install_lock = threading.Lock()
_library: dict[str, Any] = {}
_compiled: dict[int, CompiledFirstValidator] = {}


class CompiledFirstValidator:
    """Valid for ``jsonschema_rs``: valid. Otherwise the library's validator decides (and
    raises its own error). A payload only the compiled one would refuse is therefore still
    accepted, and the only cost of any disagreement is the slower check."""

    __slots__ = ("_compiled", "_library", "schema")

    def __init__(self, library_validator: Any) -> None:
        self._library = library_validator
        self.schema = library_validator.schema
        self._compiled = jsonschema_rs.Draft4Validator(self.schema, validate_formats=False)

    def validate(self, payload: Any) -> None:
        try:
            if self._compiled.is_valid(payload):
                return
        except (ValueError, TypeError, OverflowError):
            pass  # e.g. a number it cannot represent: the library's validator reads anything
        self._library.validate(payload)


def _get_validator(
    message_type_id: int, action: str, ocpp_version: str, parse_float: Any = float
) -> Any:
    validator = _library["get_validator"](message_type_id, action, ocpp_version, parse_float)
    if parse_float is not float:
        return validator
    compiled = _compiled.get(id(validator))  # the library keeps its validators for good
    if compiled is None:
        compiled = _compiled[id(validator)] = CompiledFirstValidator(validator)
    return compiled


@functools.lru_cache(maxsize=KEYS_REMEMBERED)
def _snake_key(key: str) -> str:
    return next(iter(_library["camel_to_snake_case"]({key: None})))


@functools.lru_cache(maxsize=KEYS_REMEMBERED)
def _camel_key(key: str) -> str:
    return next(iter(_library["snake_to_camel_case"]({key: None})))


def _convert(data: Any, key_of: Any) -> Any:
    if isinstance(data, dict):
        return {key_of(k): _convert(v, key_of) for k, v in data.items()}
    if isinstance(data, list):
        return [_convert(v, key_of) for v in data]
    return data


def _camel_to_snake_case(data: Any) -> Any:
    return _convert(data, _snake_key)


def _snake_to_camel_case(data: Any) -> Any:
    return _convert(data, _camel_key)


def install() -> None:
    """Plug the compiled validators and the remembered key conversions into the library
    (idempotent)."""
    with _install_lock:
        if _library:
            return
        _library["get_validator"] = ocpp_messages.get_validator
        _library["camel_to_snake_case"] = ocpp_charge_point.camel_to_snake_case
        _library["snake_to_camel_case"] = ocpp_charge_point.snake_to_camel_case
        ocpp_messages.get_validator = _get_validator
        ocpp_charge_point.camel_to_snake_case = _camel_to_snake_case
        ocpp_charge_point.snake_to_camel_case = _snake_to_camel_case


def remember_signatures(cls: type) -> None:
    """Each ``@on``/``@after`` handler of ``cls`` (and its bases) carries its own signature,
    which ``inspect.signature`` then returns at once: the same signature, computed once."""
    for klass in cls.__mro__:
        for attr in vars(klass).values():
            handler = hasattr(attr, "_on_action") or hasattr(attr, "_after_action")
            if handler and "__signature__" not in vars(attr):
                attr.__signature__ = inspect.signature(attr)
