"""The CSMS core: one actor per EVSE (a Pykka thread each), a supervisor, the
MQTT bridge, the read model.

The wire protocol is the top-level package :mod:`protocol`, not part of this one.

The names below are imported on first use (PEP 562), so ``import actors.mqtt_child`` (the
CSMS's MQTT process) stays light: the whole package, with storage and SQLAlchemy behind it,
takes over a second to import.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from actors.bridge import MqttBridgeActor
    from actors.evse import EvseActor
    from actors.evse_logic import Evse
    from actors.evse_state import EvseState
    from actors.evse_transition import transition
    from actors.fleet_view import EvseView, FleetView, StationView
    from actors.listeners import EvseListener, ListenerHost
    from actors.messages import CommandOutcome, EvseChanged, OperatorAlert, StationChanged
    from actors.supervisor import SupervisorActor
    from actors.system import Csms, CsmsConfig, CsmsSystem, build_csms

_EXPORTS = {
    "CommandOutcome": "actors.messages",
    "Csms": "actors.system",
    "CsmsConfig": "actors.system",
    "CsmsSystem": "actors.system",
    "ListenerHost": "actors.listeners",
    "build_csms": "actors.system",
    "Evse": "actors.evse_logic",
    "EvseActor": "actors.evse",
    "EvseChanged": "actors.messages",
    "EvseListener": "actors.listeners",
    "EvseState": "actors.evse_state",
    "EvseView": "actors.fleet_view",
    "FleetView": "actors.fleet_view",
    "MqttBridgeActor": "actors.bridge",
    "OperatorAlert": "actors.messages",
    "StationChanged": "actors.messages",
    "StationView": "actors.fleet_view",
    "SupervisorActor": "actors.supervisor",
    "transition": "actors.evse_transition",
}

__all__ = [
    "CommandOutcome",
    "Csms",
    "CsmsConfig",
    "CsmsSystem",
    "Evse",
    "EvseActor",
    "EvseChanged",
    "EvseListener",
    "EvseState",
    "EvseView",
    "FleetView",
    "ListenerHost",
    "MqttBridgeActor",
    "OperatorAlert",
    "StationChanged",
    "StationView",
    "SupervisorActor",
    "build_csms",
    "transition",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'actors' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
