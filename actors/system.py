"""The composition root: :func:`build_csms` builds a running CSMS; :class:`CsmsSystem` is it.

Construction goes in dependency order and nothing refers back to the whole: first the plain
objects (the clock, the read model, the EVSE registry, the restart counter, the live hub,
the metrics, the session owners, the notifier, :class:`~actors.commands.Commands` and the
:class:`~actors.charging.ChargingService`), which exist before any thread so the gateway can
be built on them before gunicorn forks; then, in :meth:`CsmsSystem.start`, the actors:
subscribers, reservations, bridge, supervisor (and through it the EVSE actors), stopped in
reverse. Later-started actors are found through registries, not back-references: the
supervisor registers itself and every EVSE actor in the :class:`EvseRegistry`, the
reservation actor goes into an :class:`~actors.slot.ActorSlot`.

:class:`CsmsSystem` is also the one small interface the gateway talks to (:class:`Csms`):
reads go to the :class:`FleetView`, commands go to the owning EVSE actor with a time-out.
Keeping the gateway on this interface is what lets it become remote later (a gateway node
sending commands over MQTT to the node that owns the EVSE).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import pykka

from actors.alert_log import AlertLog, AlertRecorder
from actors.bridge import BridgeStats, Connect, MqttBridgeActor
from actors.charging import ChargingService
from actors.clock import Clock, SystemClock
from actors.commands import Commands
from actors.driver_quota import DriverQuota
from actors.fleet_view import EvseView, FleetView, FleetViewWriter
from actors.listeners import EvseListener, ListenerHost
from actors.live import LiveHub
from actors.live_feed import LiveFeed
from actors.messages import CommandOutcome
from actors.metrics import CsmsMetrics, RestartCounter
from actors.metrics_recorder import MetricsRecorder
from actors.node_server import NodeChannel, NodePublisher, NodeRpc, serve_node
from actors.notifier import Notifier
from actors.reservations import ReservationActor
from actors.routing import EvseRegistry
from actors.session_owners import SessionOwner, SessionOwners
from actors.session_recorder import SessionRecorder
from actors.site_model import SiteBoard
from actors.site_router import smart_charging
from actors.slot import ActorSlot
from actors.state_recorder import LastKnownEvse, StateRecorder, last_known_fleet
from actors.supervision import restored
from actors.supervisor import SupervisorActor
from actors.system_config import Csms, CsmsConfig
from protocol import CommandArgs, CommandName
from protocol.mqtt_settings import MqttSettings, parse_mqtt_url
from storage import Storage
from storage.protocols import CsmsStores

__all__ = ["Csms", "CsmsConfig", "CsmsSystem", "build_csms"]

log = logging.getLogger(__name__)


def build_csms(
    config: CsmsConfig,
    *,
    clock: Clock | None = None,
    stores: CsmsStores | None = None,
    wait_connected_s: float | None = 10.0,
) -> CsmsSystem:
    """Build and start a CSMS: :class:`CsmsSystem` then :meth:`CsmsSystem.start`.

    ``clock``: where every time read and timer goes (default: a :class:`SystemClock` the
    system stops with its actors); ``stores``: instead of ``config.storage``.
    """
    return CsmsSystem(config, clock=clock, stores=stores).start(wait_connected_s=wait_connected_s)


class CsmsSystem:
    """The running CSMS of one node: clock, bridge, supervisor, subscribers, read model.

    ``CsmsSystem(config)`` builds the plain objects only (no thread); :meth:`start` starts the
    actors. See the module docstring for the order.
    """

    def __init__(
        self,
        config: CsmsConfig,
        *,
        clock: Clock | None = None,
        stores: CsmsStores | None = None,
    ) -> None:
        if stores is not None:
            config = replace(config, storage=stores)
        self.config = config
        self._own_clock: SystemClock | None = None
        if clock is None:
            clock = self._own_clock = SystemClock()
        self.clock: Clock = clock
        self.view = FleetView(clock=self.clock.time_s)
        self.bridge_stats = BridgeStats()
        self.registry = EvseRegistry()
        """EVSE key -> live EVSE actor, and the supervisor: the ingest router's and
        :attr:`commands`' map."""
        self.restarts = RestartCounter()
        self.mqtt_connected = threading.Event()
        self._refs: list[pykka.ActorRef[Any]] = []
        self._node: tuple[NodeChannel, NodePublisher, NodeRpc] | None = None
        self.hub = LiveHub()
        self.metrics = CsmsMetrics(
            view=self.view, bridge=self.bridge_stats, hub=self.hub, restarts=self.restarts
        )
        store = config.storage
        self.owners = SessionOwners(
            lookup=self._driver_from_storage if store else None, monotonic=self.clock.monotonic
        )
        self.alerts = AlertLog(store.alerts if store else None, self.hub, self.clock.time_ms)
        """The operators' alert log (:mod:`actors.alert_log`): stored, then pushed live."""
        self.notifier = Notifier(
            store.notifications if store else None,
            self.hub,
            clock_ms=self.clock.time_ms,
            alerts=self.alerts,
        )
        self.commands = Commands(self.registry, timeout_s=config.command_timeout_s)
        self.sites = SiteBoard()
        """What each site actor last decided (smart charging), for the metrics."""
        self.metrics.watch_sites(self.sites)
        self.reservations = ActorSlot("reservation")
        self.charging = ChargingService(
            self.commands,
            alerts=self.alerts,
            view=self.view,
            reservations=self.reservations,
            owners=self.owners,
            clock_ms=self.clock.time_ms,
            reservation_s=config.reservation_s,
            quota=DriverQuota(
                self.view,
                self.owners,
                max_sessions=config.max_sessions_per_driver,
                monotonic=self.clock.monotonic,
                settle_s=config.command_timeout_s + 20.0,
            ),
        )

    @property
    def supervisor(self) -> pykka.ActorRef[Any] | None:
        """The running supervisor (it registers itself in :attr:`registry`), or ``None``."""
        return self.registry.supervisor

    def _serve_node(self) -> tuple[NodeChannel, NodePublisher, NodeRpc]:
        url = self.config.mqtt_url
        settings = self.config.node_mqtt
        if settings is None:
            settings = url if isinstance(url, MqttSettings) else parse_mqtt_url(url)
            if settings.username is not None:
                raise ValueError("serve_gateways on a broker with accounts needs node_mqtt")
            settings = settings.with_client_id(f"{self.config.client_id}-node")
        return serve_node(
            settings=settings,
            view=self.view,
            owners=self.owners,
            hub=self.hub,
            charging=self.charging,
            alerts=self.alerts,
            keepalive=self.config.keepalive,
        )

    def _driver_in_memory(self, session_id: str | None) -> str | None:
        """The state recorder's lookup: never a query per flush."""
        owner = None if session_id is None else self.owners.get(session_id)
        return None if owner is None else owner.driver_id

    def _driver_from_storage(self, session_id: str) -> str | None:
        assert self.config.storage is not None  # only looked up with storage
        session = self.config.storage.sessions.get(session_id)
        if session is not None:
            return session.driver_id
        # a session a driver started by badging at an OCPP charger (gateway.ocpp_auth)
        tags = getattr(self.config.storage, "id_tags", None)
        return None if tags is None else tags.start_driver(session_id)

    def _session_recorder(self, last_known: Sequence[LastKnownEvse]) -> SessionRecorder | None:
        """The session rows' writer, on a host of its own: a session's row (and its driver)
        is written right after the burst that opened it, never behind a bulk write."""
        store = self.config.storage
        if store is None:
            return None
        return SessionRecorder(
            store.sessions,
            self.owners,
            self.notifier,
            clock_ms=self.clock.time_ms,
            monotonic=self.clock.monotonic,
            resumed=[known.state for known in last_known],
            # sessions and notifications in one SQL database (not on Firebase)
            transaction=store.transaction if isinstance(store, Storage) else None,
        )

    def _recorders(self, last_known: Sequence[LastKnownEvse]) -> list[EvseListener]:
        """Every EVSE's last state and the metric samples: coalesced, written on ticks."""
        store = self.config.storage
        if store is None:
            return []
        return [
            StateRecorder(
                store.evse_states,
                store.status_events,
                clock_ms=self.clock.time_ms,
                monotonic=self.clock.monotonic,
                last_known=last_known,
                driver_of=self._driver_in_memory,
            ),
            MetricsRecorder(
                store.metrics,
                retention=self.config.sample_retention,
                clock_ms=self.clock.time_ms,
                monotonic=self.clock.monotonic,
            ),
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
                        evse_id=known.state.evse_id,
                    )
                )
        return fleet

    def start(self, *, wait_connected_s: float | None = 10.0) -> CsmsSystem:
        """Start everything; optionally wait until the MQTT session is up."""
        try:
            last_known = self._last_known_fleet()
            self._restore_view(last_known)
            # Four listener hosts: what people see (read model first, then the live feed)
            # never waits for a disk; session rows never wait behind the bulk recorders;
            # the alert log writes on a host of its own.
            node = self._node = self._serve_node() if self.config.serve_gateways else None
            live = ListenerHost.start(
                [
                    FleetViewWriter(self.view),
                    LiveFeed(self.hub, self.owners),
                    *([] if node is None else [node[1]]),
                    *self.config.listeners,
                ],
                timers=self.clock,  # ticks only if a listener ticks (the node publisher)
                name="live",
            )
            self._refs.append(live)
            subscribers: list[pykka.ActorRef[Any]] = [live]
            # A write per alert never holds up the live feed; the alert log hears only
            # alerts and stations, not every EVSE change (one wake-up less per burst).
            alerts = ListenerHost.start([AlertRecorder(self.alerts)], name="alerts")
            self._refs.append(alerts)
            session_writer = None
            sessions = self._session_recorder(last_known)
            if sessions is not None:
                session_writer = ListenerHost.start([sessions], name="sessions")
                self._refs.append(session_writer)
                subscribers.append(session_writer)
            recorders = self._recorders(last_known)
            if recorders:
                storage = ListenerHost.start(recorders, timers=self.clock, name="recorders")
                self._refs.append(storage)
                subscribers.append(storage)
            sites = (
                smart_charging(
                    self.config.storage.sites,
                    commands=self.commands,
                    clock=self.clock,
                    board=self.sites,
                    round_s=self.config.site_round_s,
                )
                if isinstance(self.config.storage, Storage)
                else None
            )
            if sites is not None:
                site_host = ListenerHost.start([sites], timers=self.clock, name="sites")
                self._refs.append(site_host)
                subscribers.append(site_host)
            store = self.config.storage
            reservations = ReservationActor.start(
                store=store.reservations if store else None,
                notifier=self.notifier,
                owners=self.owners,
                clock=self.clock,
                view=self.view,
                commands=self.commands,
            )
            self._refs.append(reservations)
            self.reservations.put(reservations)
            bridge = MqttBridgeActor.start(
                self.config.mqtt_url,
                client_id=self.config.client_id,
                keepalive=self.config.keepalive,
                stats=self.bridge_stats,
                connected=self.mqtt_connected,
                process=self.config.mqtt_process,
            )
            self._refs.append(bridge)
            supervisor = SupervisorActor.start(
                bridge=bridge,
                subscribers=subscribers,
                status_subscribers=[reservations],
                alert_subscribers=[alerts],
                timers=self.clock,
                monotonic=self.clock.monotonic,
                clock_ms=self.clock.time_ms,
                restarts=self.restarts,
                max_restarts=self.config.max_restarts,
                restart_window_s=self.config.restart_window_s,
                observe_command=self.metrics.observe_command,
                last_known=last_known,
                reconcile_timeout_s=self.config.command_timeout_s,
                session_writer=session_writer,
                registry=self.registry,
            )
            self._refs.append(supervisor)
            bridge.tell(Connect(target=supervisor, registry=self.registry))
            if node is not None:
                node[0].start()
        except BaseException:
            self.stop()
            raise
        if wait_connected_s is not None and not self.mqtt_connected.wait(wait_connected_s):
            log.warning("MQTT broker at %s not reachable yet; still trying", self.config.mqtt_url)
        return self

    def stop(self) -> None:
        """Stop in reverse order of start: supervisor (and its EVSEs), bridge, subscribers;
        then the clock's timer thread, if this system made the clock."""
        if self._node is not None:
            channel, _, rpc = self._node
            channel.stop()  # no new requests; the running ones finish (their replies are lost)
            rpc.stop()
            self._node = None
        for ref in reversed(self._refs):
            with contextlib.suppress(pykka.ActorDeadError, pykka.Timeout):
                ref.stop(block=True, timeout=10)
        self._refs.clear()
        self.reservations.put(None)
        if self._own_clock is not None:
            self._own_clock.close()

    def __enter__(self) -> CsmsSystem:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ Csms interface

    def evse_ref(self, evse_id: str, timeout_s: float = 5.0) -> pykka.ActorRef[Any]:
        """The EVSE's live actor (:meth:`Commands.evse_ref`)."""
        return self.commands.evse_ref(evse_id, timeout_s)

    def command(
        self,
        evse_id: str,
        command: CommandName,
        args: CommandArgs = None,
        timeout_s: float | None = None,
    ) -> CommandOutcome:
        """Send a command to an EVSE's station and wait for the reply (edge-only)."""
        return self.commands.named(evse_id, command, args, timeout_s)
