"""CsmsSystem: starts the actors in dependency order, stops them in reverse.

It is also the one small interface the gateway talks to (:class:`Csms`): reads
go to the :class:`FleetView`, commands go to the owning EVSE actor with a
time-out. Keeping the gateway on this interface is what lets it become remote
later (a gateway node sending commands over MQTT to the node that owns the EVSE).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

import pykka

from actors.bridge import BridgeStats, Connect, MqttBridgeActor
from actors.charging import ChargingService
from actors.errors import (
    ActorUnavailableError,
    CommandTimeoutError,
    SmartchargeError,
    StationOfflineError,
)
from actors.fleet_view import EvseView, FleetView, FleetViewWriter
from actors.listeners import EvseListener, ListenerHost
from actors.live import LiveHub
from actors.live_feed import LiveFeed
from actors.messages import CommandOutcome, GetEvseRef, SendCommand
from actors.metrics import CsmsMetrics, supervisor_restarts
from actors.metrics_recorder import MetricsRecorder, SampleRetention
from actors.notifier import Notifier
from actors.reservations import ReservationActor
from actors.routing import EvseRegistry
from actors.session_owners import SessionOwner, SessionOwners
from actors.session_recorder import SessionRecorder
from actors.state_recorder import LastKnownEvse, StateRecorder, last_known_fleet
from actors.supervisor import SupervisorActor, restored
from actors.timers import Timers
from protocol import (
    CancelReservationArgs,
    CommandArgs,
    CommandName,
    EvseId,
    RejectReason,
)
from protocol.mqtt_settings import MqttSettings
from storage import Storage

__all__ = ["Csms", "CsmsConfig", "CsmsSystem"]

log = logging.getLogger(__name__)


class Csms(Protocol):
    """What the gateway needs from the CSMS: the read model and commands."""

    @property
    def view(self) -> FleetView: ...

    @property
    def charging(self) -> ChargingService: ...

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
    storage: Any = None
    """A :class:`storage.Storage`; without one, sessions and reservations are not recorded."""
    reservation_s: float = 900.0
    sample_retention: SampleRetention = field(default_factory=SampleRetention)
    """How long raw EVSE samples are kept (with storage), and the buckets after that."""
    mqtt_process: bool = True
    """Run the MQTT client in a child process (:class:`actors.mqtt_link.MqttLink`), off the
    actors' GIL; ``False`` keeps it in this process."""


class CsmsSystem:
    """The running CSMS of one node: timers, bridge, supervisor, subscribers, read model."""

    def __init__(self, config: CsmsConfig) -> None:
        self.config = config
        self.view = FleetView()
        self.bridge_stats = BridgeStats()
        self.registry = EvseRegistry()
        """EVSE key -> live EVSE actor: the ingest router's and :meth:`evse_ref`'s map."""
        self.mqtt_connected = threading.Event()
        self._timers: Timers | None = None
        self._refs: list[pykka.ActorRef[Any]] = []
        self.supervisor: pykka.ActorRef[Any] | None = None
        self.hub = LiveHub()
        self.metrics = CsmsMetrics(
            view=self.view,
            bridge=self.bridge_stats,
            hub=self.hub,
            restarts=supervisor_restarts(lambda: self.supervisor),
        )
        store = config.storage
        self.owners = SessionOwners(lookup=self._driver_from_storage if store else None)
        self.notifier = Notifier(store.notifications if store else None, self.hub)
        self._reservations: pykka.ActorRef[Any] | None = None
        self.charging = ChargingService(
            self,
            reservations=self._reservations_ref,
            owners=self.owners,
            reservation_s=config.reservation_s,
        )

    def _reservations_ref(self) -> pykka.ActorRef[Any]:
        if self._reservations is None:
            raise ActorUnavailableError("the CSMS is not running")
        return self._reservations

    def _driver_in_memory(self, session_id: str | None) -> str | None:
        """The state recorder's lookup: never a query per flush."""
        owner = None if session_id is None else self.owners.get(session_id)
        return None if owner is None else owner.driver_id

    def _driver_from_storage(self, session_id: str) -> str | None:
        session = self.config.storage.sessions.get(session_id)
        return None if session is None else session.driver_id

    def _storage_listeners(self, last_known: Sequence[LastKnownEvse]) -> list[EvseListener]:
        """The recorders: sessions, every EVSE's last state, the metric samples."""
        store = self.config.storage
        if store is None:
            return []
        return [
            SessionRecorder(
                store.sessions,
                self.owners,
                self.notifier,
                resumed=[known.state for known in last_known],
                # sessions and notifications in one SQL database (not on Firebase)
                transaction=store.transaction if isinstance(store, Storage) else None,
            ),
            StateRecorder(
                store.evse_states,
                store.status_events,
                last_known=last_known,
                driver_of=self._driver_in_memory,
            ),
            MetricsRecorder(store.metrics, retention=self.config.sample_retention),
        ]

    def _restore_view(self, last_known: Sequence[LastKnownEvse]) -> None:
        """The read model starts from what the previous run left (before any actor runs)."""
        stations = {k.station.id: k.station for k in last_known if k.station is not None}
        self.view.restore(
            stations.values(),
            (EvseView(state=restored(k), updated_at=k.updated_at_ms / 1000) for k in last_known),
        )

    def _last_known_fleet(self) -> list[LastKnownEvse]:
        """What the previous run left in storage (nothing without storage)."""
        if self.config.storage is None:
            return []
        fleet = last_known_fleet(self.config.storage.evse_states.all())
        for known in fleet:  # the owners of running sessions, as the gateway had registered them
            sid = known.state.session_id
            if sid is not None and known.session_driver_id is not None:
                self.owners.expect(
                    SessionOwner(
                        session_id=sid,
                        driver_id=known.session_driver_id,
                        target_soc=known.state.target_soc,
                    )
                )
        return fleet

    def _cancel_reservation_at_station(self, evse_id: str, reservation_id: str) -> None:
        """Called on the reservation actor's thread: never block it on a round trip."""

        def cancel() -> None:
            try:
                self.command(
                    evse_id,
                    CommandName.CANCEL_RESERVATION,
                    CancelReservationArgs(reservation_id=reservation_id),
                )
            except SmartchargeError as exc:
                log.warning(
                    "could not cancel reservation %s at %s: %s", reservation_id, evse_id, exc
                )

        threading.Thread(target=cancel, name=f"cancel-{evse_id}", daemon=True).start()

    def start(self, *, wait_connected_s: float | None = 10.0) -> CsmsSystem:
        """Start everything; optionally wait until the MQTT session is up."""
        try:
            self._timers = Timers()
            last_known = self._last_known_fleet()
            self._restore_view(last_known)
            # Two listener hosts: what people see (read model first, then the live feed)
            # never waits for a disk; the recorders write on their own thread.
            live = ListenerHost.start(
                [
                    FleetViewWriter(self.view),
                    LiveFeed(self.hub, self.owners),
                    *self.config.listeners,
                ],
                name="live",
            )
            self._refs.append(live)
            subscribers: list[pykka.ActorRef[Any]] = [live]
            session_writer = None
            recorders = self._storage_listeners(last_known)
            if recorders:
                session_writer = ListenerHost.start(recorders, timers=self._timers, name="storage")
                self._refs.append(session_writer)
                subscribers.append(session_writer)
            store = self.config.storage
            reservations = ReservationActor.start(
                store=store.reservations if store else None,
                notifier=self.notifier,
                owners=self.owners,
                timers=self._timers,
                view=self.view,
                cancel_at_station=self._cancel_reservation_at_station,
            )
            self._refs.append(reservations)
            self._reservations = reservations
            bridge = MqttBridgeActor.start(
                self.config.mqtt_url,
                client_id=self.config.client_id,
                keepalive=self.config.keepalive,
                stats=self.bridge_stats,
                connected=self.mqtt_connected,
                process=self.config.mqtt_process,
            )
            self._refs.append(bridge)
            self.supervisor = SupervisorActor.start(
                bridge=bridge,
                subscribers=subscribers,
                status_subscribers=[reservations],
                timers=self._timers,
                max_restarts=self.config.max_restarts,
                restart_window_s=self.config.restart_window_s,
                observe_command=self.metrics.observe_command,
                last_known=last_known,
                reconcile_timeout_s=self.config.command_timeout_s,
                session_writer=session_writer,
                registry=self.registry,
            )
            self._refs.append(self.supervisor)
            bridge.tell(Connect(target=self.supervisor, registry=self.registry))
        except BaseException:
            self.stop()
            raise
        if wait_connected_s is not None and not self.mqtt_connected.wait(wait_connected_s):
            log.warning("MQTT broker at %s not reachable yet; still trying", self.config.mqtt_url)
        return self

    def stop(self) -> None:
        """Stop in reverse order of start: supervisor (and its EVSEs), bridge, subscribers."""
        for ref in reversed(self._refs):
            with contextlib.suppress(pykka.ActorDeadError, pykka.Timeout):
                ref.stop(block=True, timeout=10)
        self._refs.clear()
        if self._timers is not None:
            self._timers.stop()
            self._timers = None

    def __enter__(self) -> CsmsSystem:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ Csms interface

    def evse_ref(self, evse_id: str, timeout_s: float = 5.0) -> pykka.ActorRef[Any]:
        """The EVSE's live actor, from the registry (no ``ask``); the supervisor says why
        there is none (unknown, out of service)."""
        if self.supervisor is None:
            raise ActorUnavailableError("the CSMS is not running")
        known = self.registry.get(evse_id)
        if known is not None and known.is_alive():
            return known
        try:
            ref = cast(
                "pykka.ActorRef[Any]",
                self.supervisor.ask(GetEvseRef(evse_id=EvseId(evse_id)), timeout=timeout_s),
            )
        except pykka.Timeout:
            raise ActorUnavailableError("the supervisor did not answer in time") from None
        except pykka.ActorDeadError:
            raise ActorUnavailableError("the supervisor is down") from None
        return ref

    def command(
        self,
        evse_id: str,
        command: CommandName,
        args: CommandArgs = None,
        timeout_s: float | None = None,
    ) -> CommandOutcome:
        """Send a command to an EVSE's station and wait for the reply (edge-only ``ask``)."""
        timeout = timeout_s if timeout_s is not None else self.config.command_timeout_s
        ref = self.evse_ref(evse_id)
        reply: pykka.Future[Any] = pykka.ThreadingFuture()
        try:
            ref.tell(SendCommand(command=command, args=args, reply=reply, timeout_s=timeout))
        except pykka.ActorDeadError:
            raise ActorUnavailableError(f"EVSE {evse_id} is restarting; try again") from None
        try:
            outcome: CommandOutcome = reply.get(timeout=timeout + 2.0)
        except pykka.Timeout:
            raise CommandTimeoutError(f"no answer for {command} on EVSE {evse_id}") from None
        if not outcome.accepted and outcome.reason == RejectReason.OFFLINE:
            raise StationOfflineError(
                f"offline: the station of EVSE {evse_id} is not connected; {command} was not sent"
            )
        return outcome
