"""The translator's compiled OCPP validation (``gateway/ocpp_validation.py``) accepts and refuses
exactly what the ``ocpp`` library's own ``jsonschema`` validation does, with the same errors,
and converts keys as the library does. The model is the library itself, run beside it."""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

import ocpp
import ocpp.charge_point as ocpp_charge_point
import ocpp.messages as ocpp_messages
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ocpp.exceptions import (
    FormatViolationError,
    OCPPError,
    ProtocolError,
    TypeConstraintViolationError,
)
from ocpp.messages import Call, CallResult, MessageType

from gateway import ocpp_validation

pytestmark = pytest.mark.timeout(120)

ocpp_validation.install()
LIBRARY_GET_VALIDATOR = ocpp_validation._library["get_validator"]
LIBRARY_TO_SNAKE = ocpp_validation._library["camel_to_snake_case"]
LIBRARY_TO_CAMEL = ocpp_validation._library["snake_to_camel_case"]

SCHEMAS = Path(ocpp.__file__).parent / "v16" / "schemas"
DECIMAL = {"SetChargingProfile", "RemoteStartTransaction", "GetCompositeScheduleResponse"}
NAMES = sorted(p.stem for p in SCHEMAS.glob("*.json") if p.stem not in DECIMAL)


def _kind(name: str) -> tuple[int, str]:
    if name.endswith("Response"):
        return MessageType.CallResult, name.removesuffix("Response")
    return MessageType.Call, name


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=2**63 - 2, max_value=2**70)
    | st.floats()
    | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)


def _near(node: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values shaped by the schema ``node``, often valid, often just off, sometimes anything."""
    kind = node.get("type")
    shaped: st.SearchStrategy[Any]
    if kind == "object":
        props = node.get("properties", {})
        shaped = st.builds(
            lambda chosen, extra: {**chosen, **extra},
            st.fixed_dictionaries({}, optional={k: _near(v) for k, v in props.items()}),
            st.dictionaries(st.sampled_from(["x", "connectorid", *props]), json_values, max_size=1),
        )
    elif kind == "array":
        shaped = st.lists(_near(node.get("items", {})), max_size=3)
    elif "enum" in node:
        shaped = st.sampled_from(node["enum"]) | st.text(max_size=4)
    elif kind == "string":
        longest = node.get("maxLength", 30)
        shaped = st.text(max_size=longest + 2) | st.just("x" * (longest + 1))
    elif kind == "integer":
        shaped = st.integers(-(2**40), 2**40) | st.floats(-10, 10) | st.just(1.0)
    elif kind == "number":
        shaped = st.floats() | st.integers()
    elif kind == "boolean":
        shaped = st.booleans() | st.integers(0, 1)
    else:
        shaped = json_values
    return st.one_of(shaped, shaped, shaped, json_values)


@st.composite
def schema_and_payload(draw: st.DrawFn) -> tuple[str, Any]:
    name = draw(st.sampled_from(NAMES))
    schema = json.loads((SCHEMAS / f"{name}.json").read_text(encoding="utf-8-sig"))
    return name, draw(_near(schema))


def _outcome(validate: Any, payload: Any) -> str | None:
    try:
        validate(payload)
    except Exception as exc:  # the library's validator raises jsonschema's ValidationError
        return f"{type(exc).__name__}:{getattr(exc, 'validator', '')}:{getattr(exc, 'path', '')}"
    return None


@settings(max_examples=400, deadline=None)
@given(schema_and_payload())
def test_the_compiled_validation_decides_and_fails_exactly_as_the_library(
    case: tuple[str, Any],
) -> None:
    name, payload = case
    message_type, action = _kind(name)
    library = LIBRARY_GET_VALIDATOR(message_type, action, "1.6")
    ours = ocpp_messages.get_validator(message_type, action, "1.6")
    assert isinstance(ours, ocpp_validation.CompiledFirstValidator)
    assert _outcome(ours.validate, payload) == _outcome(library.validate, payload)


def _call_error(action: str, payload: dict[str, Any]) -> type[OCPPError] | None:
    try:
        ocpp_messages._validate_payload(Call("u1", action, payload), "1.6")
    except OCPPError as exc:
        return type(exc)
    return None


def test_bad_payloads_still_give_the_library_s_ocpp_errors() -> None:
    boot = {"chargePointVendor": "v", "chargePointModel": "m"}
    assert _call_error("BootNotification", boot) is None
    assert _call_error("BootNotification", {**boot, "chargePointVendor": 7}) is (
        TypeConstraintViolationError
    )
    assert _call_error("BootNotification", {**boot, "surprise": True}) is FormatViolationError
    assert _call_error("BootNotification", {"chargePointModel": "m"}) is ProtocolError
    too_long = {**boot, "chargePointModel": "m" * 21}
    assert _call_error("BootNotification", too_long) is TypeConstraintViolationError
    status = {"connectorId": 1, "errorCode": "NoError", "status": "Charging?"}
    assert _call_error("StatusNotification", status) is FormatViolationError
    # what only the library's float handling accepts keeps the library's validator
    profile = {
        "connectorId": 1,
        "csChargingProfiles": {
            "chargingProfileId": 900,
            "stackLevel": 0,
            "chargingProfilePurpose": "TxDefaultProfile",
            "chargingProfileKind": "Absolute",
            "chargingSchedule": {
                "chargingRateUnit": "W",
                "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 21.4}],
            },
        },
    }
    assert _call_error("SetChargingProfile", profile) is None


def test_answers_are_validated_too() -> None:
    good = CallResult("u1", {"currentTime": "2026-01-01T00:00:00Z"}, action="Heartbeat")
    ocpp_messages._validate_payload(good, "1.6")
    bad = CallResult("u1", {"currentTime": 5}, action="Heartbeat")
    with pytest.raises(TypeConstraintViolationError):
        ocpp_messages._validate_payload(bad, "1.6")


def _schema_keys(node: Any) -> set[str]:
    keys: set[str] = set()
    if isinstance(node, dict):
        keys |= set(node.get("properties", {}))
        for value in node.values():
            keys |= _schema_keys(value)
    elif isinstance(node, list):
        for value in node:
            keys |= _schema_keys(value)
    return keys


def test_keys_are_converted_as_the_library_converts_them() -> None:
    camel = set()
    for path in SCHEMAS.glob("*.json"):
        camel |= _schema_keys(json.loads(path.read_text(encoding="utf-8-sig")))
    assert {"meterValue", "connectorId", "idTagInfo"} <= camel
    payload = {key: [{key: 1}, {"inner": {key: None}}] for key in camel}
    snake = ocpp_charge_point.camel_to_snake_case(payload)
    assert snake == LIBRARY_TO_SNAKE(payload)
    assert ocpp_charge_point.snake_to_camel_case(snake) == LIBRARY_TO_CAMEL(snake)
    assert ocpp_charge_point.snake_to_camel_case({"soc": 1}) == {"SoC": 1}


def test_handlers_keep_their_signatures_once_remembered() -> None:
    from gateway.ocpp_link import ChargePointLink  # remembers them when imported

    handler = ChargePointLink.on_meter_values
    assert "__signature__" in vars(handler)
    unwrapped = inspect.signature(handler.__wrapped__)
    assert inspect.signature(handler) == unwrapped
    assert list(inspect.signature(handler).parameters)[:3] == [
        "self",
        "connector_id",
        "meter_value",
    ]
