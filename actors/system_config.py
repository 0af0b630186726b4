"""The shapes of a CSMS: :class:`CsmsConfig` (what :func:`actors.system.build_csms` builds)
and :class:`Csms` (the one small interface the gateway talks to, in the node or remote)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from actors.charging import Charging
from actors.fleet_view import FleetView
from actors.listeners import EvseListener
from actors.live import LiveHub
from actors.messages import CommandOutcome
from actors.metrics import CsmsMetrics
from actors.metrics_recorder import SampleRetention
from protocol import CommandArgs, CommandName
from protocol.mqtt_settings import MqttSettings
from storage.protocols import CsmsStores

__all__ = ["Csms", "CsmsConfig"]


class Csms(Protocol):
    """What the gateway needs from the CSMS: the read model and commands."""

    @property
    def view(self) -> FleetView: ...

    @property
    def charging(self) -> Charging: ...

    @property
    def hub(self) -> LiveHub: ...

    @property
    def metrics(self) -> CsmsMetrics: ...

    def command(
        self,
        evse_id: str,
        command: CommandName,
        args: CommandArgs = None,
        timeout_s: float | None = None,
    ) -> CommandOutcome: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class CsmsConfig:
    mqtt_url: str | MqttSettings = "mqtt://127.0.0.1:1883"
    """A URL without credentials, or :class:`MqttSettings` (user, password, TLS)."""
    client_id: str = "smartcharge-csms"
    keepalive: int = 10
    command_timeout_s: float = 10.0
    max_restarts: int = 3
    restart_window_s: float = 60.0
    listeners: Sequence[EvseListener] = field(default_factory=tuple)
    storage: CsmsStores | None = None
    """The stores (:class:`storage.Storage`, or one with its sessions and notifications on
    Firebase); without them, sessions and reservations are not recorded."""
    reservation_s: float = 900.0
    max_sessions_per_driver: int = 1
    """Sessions one driver may run at once (operators are not counted); a driver also holds
    at most one reservation. ``smartcharge csms --max-sessions-per-driver``."""
    sample_retention: SampleRetention = field(default_factory=SampleRetention)
    """How long raw EVSE samples are kept (with storage), and the buckets after that."""
    mqtt_process: bool = True
    """Run the MQTT client in a child process (:class:`actors.mqtt_link.MqttLink`), off the
    actors' GIL; ``False`` keeps it in this process."""
    serve_gateways: bool = False
    """Publish the read model and answer gateways' requests on the broker
    (:mod:`actors.node_server`, ``docs/node-protocol.md``): gateways then run apart."""
    node_mqtt: MqttSettings | None = None
    """The account the node's contract client connects with (a broker with accounts ties a
    client id to its account, so it cannot share the station link's); ``None``: the station
    link's URL, with the client id ``<client_id>-node`` (a broker without accounts)."""
    site_round_s: float = 300.0
    """Smart charging: how often paused EVSEs of a site over its limit take their turn
    (:mod:`actors.allocation`)."""
