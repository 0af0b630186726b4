"""The CSMS core: one actor per EVSE (a Pykka thread each), a supervisor, the
MQTT bridge, the read model.

The wire protocol is the top-level package :mod:`protocol`, not part of this one.

The names below are imported on first use (PEP 562), so ``import actors.mqtt_link`` (the
CSMS's MQTT process) stays light: the whole package, with storage and SQLAlchemy behind it,
takes over a second to import.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from actors.bridge import MqttBridgeActor
    from actors.dashboard import DashboardSubscriber, EvseListener
    from actors.evse import EvseActor
    from actors.evse_logic import Evse
    from actors.evse_state import EvseState, transition
    from actors.fleet_view import EvseView, FleetView, StationView
    from actors.messages import CommandOutcome, EvseChanged, OperatorAlert, StationChanged
    from actors.supervisor import SupervisorActor
    from actors.system import Csms, CsmsConfig, CsmsSystem, build_csms

_EXPORTS = {
    "CommandOutcome": "actors.messages",
    "Csms": "actors.system",
    "CsmsConfig": "actors.system",
    "CsmsSystem": "actors.system",
    "build_csms": "actors.system",
    "DashboardSubscriber": "actors.dashboard",
    "Evse": "actors.evse_logic",
    "EvseActor": "actors.evse",
    "EvseChanged": "actors.messages",
    "EvseListener": "actors.dashboard",
    "EvseState": "actors.evse_state",
    "EvseView": "actors.fleet_view",
    "FleetView": "actors.fleet_view",
    "MqttBridgeActor": "actors.bridge",
    "OperatorAlert": "actors.messages",
    "StationChanged": "actors.messages",
    "StationView": "actors.fleet_view",
    "SupervisorActor": "actors.supervisor",
    "transition": "actors.evse_state",
}

__all__ = [
    "CommandOutcome",
    "Csms",
    "CsmsConfig",
    "CsmsSystem",
    "DashboardSubscriber",
    "Evse",
    "EvseActor",
    "EvseChanged",
    "EvseListener",
    "EvseState",
    "EvseView",
    "FleetView",
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
