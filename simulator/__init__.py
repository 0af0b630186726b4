"""Charging-station simulator: stations that speak protocol v2 over MQTT.

Layers, from pure to I/O: :mod:`~simulator.physics` (battery curves),
:mod:`~simulator.evse` (one EVSE's state machine), :class:`StationSimulator`
(a station: commands and time in, protocol messages out), :class:`StationRunner`
(lock, persistence), :class:`MqttStation` (paho), and :mod:`simulator.fleet`
(the launcher, ``main``; not imported here so ``python -m simulator.fleet`` runs
cleanly). The simulator knows only :mod:`protocol`.
"""

from simulator.clock import Clock, ManualClock, SimClock, WallClock
from simulator.evse import EvseSpec, EvseState
from simulator.fleet_config import (
    DEFAULT_CENTRE,
    FleetConfigError,
    generate_fleet,
    load_fleet_config,
    parse_centre,
    parse_fleet_config,
)
from simulator.mqtt_station import BrokerAddress, MqttStation
from simulator.outbox import Keep, Outbox
from simulator.persistence import SnapshotError, StationStore
from simulator.physics import Car, charge, power_at
from simulator.runner import StationRunner
from simulator.station import StationSimulator

__all__ = [
    "DEFAULT_CENTRE",
    "BrokerAddress",
    "Car",
    "Clock",
    "EvseSpec",
    "EvseState",
    "FleetConfigError",
    "Keep",
    "ManualClock",
    "MqttStation",
    "Outbox",
    "SimClock",
    "SnapshotError",
    "StationRunner",
    "StationSimulator",
    "StationStore",
    "WallClock",
    "charge",
    "generate_fleet",
    "load_fleet_config",
    "parse_centre",
    "parse_fleet_config",
    "power_at",
]
