"""The CSMS core: one actor per EVSE (many to an EvseHost thread), a supervisor, the
MQTT bridge, the read model.

``actors.protocol`` is the wire protocol v1 (the only module the simulator uses).
"""

from actors.bridge import MqttBridgeActor
from actors.dashboard import DashboardSubscriber, EvseListener
from actors.errors import (
    ActorUnavailableError,
    CommandTimeoutError,
    SmartchargeError,
    UnknownEvseError,
)
from actors.evse import Evse, EvseActor, EvseHost, EvseRef
from actors.evse_state import EvseState, transition
from actors.fleet_view import EvseView, FleetView, StationView
from actors.messages import CommandOutcome, EvseChanged, OperatorAlert, StationChanged
from actors.supervisor import SupervisorActor
from actors.system import Csms, CsmsConfig, CsmsSystem

__all__ = [
    "ActorUnavailableError",
    "CommandOutcome",
    "CommandTimeoutError",
    "Csms",
    "CsmsConfig",
    "CsmsSystem",
    "DashboardSubscriber",
    "Evse",
    "EvseActor",
    "EvseChanged",
    "EvseHost",
    "EvseListener",
    "EvseRef",
    "EvseState",
    "EvseView",
    "FleetView",
    "MqttBridgeActor",
    "OperatorAlert",
    "SmartchargeError",
    "StationChanged",
    "StationView",
    "SupervisorActor",
    "UnknownEvseError",
    "transition",
]
