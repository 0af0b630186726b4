"""The node's side of the node-gateway contract (:mod:`actors.node_contract`).

- :class:`NodeChannel`: the node's own paho client for the contract (apart from the station
  link, so a burst of station traffic never waits behind gateway traffic, nor the reverse);
  clean session, a retained ``alive`` with a last will saying ``false``.
- :class:`NodePublisher`: a listener on the live host, after the read model's writer. It
  publishes each changed EVSE and station, retained, once per hand-over (the newest state of
  a burst), and the whole read model again whenever the channel (re)connects.
- :class:`NodeRpc`: runs the gateways' requests on the node's
  :class:`~actors.charging.ChargingService`, on a bounded pool of threads: at most once per
  request id, never after the request's ``expires_at``; a full pool answers "busy" (503).
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Final

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from actors import node_contract as nc
from actors.alert_log import AlertLog
from actors.charging import ChargingService
from actors.evse_state import EvseState
from actors.fleet_view import FleetView
from actors.listeners import EvseListener
from actors.live import LiveEvent, LiveHub
from actors.messages import EvseChanged, StationChanged
from actors.mqtt_client import no_delay
from actors.session_owners import SessionOwners
from protocol import QOS, EvseKey, StationDescriptor, evse_key
from protocol.mqtt_settings import BACKOFF_MAX_S, BACKOFF_MIN_S, MqttSettings
from storage.errors import ActorUnavailableError, SmartchargeError

__all__ = ["NodeChannel", "NodePublisher", "NodeRpc", "RpcStats"]

log = logging.getLogger(__name__)

LIVE_KINDS_BY_RECORD: Final = frozenset({"evse", "session"})
"""Live events the gateways make themselves from :class:`~actors.node_contract.EvseRecord`."""


class NodeChannel:
    """The node's paho client for the contract; ``on_request(payload)`` runs on paho's thread."""

    def __init__(
        self,
        settings: MqttSettings,
        *,
        keepalive: int = 10,
        on_request: Callable[[bytes], None],
        on_connect: Callable[[], None],
    ) -> None:
        self._on_request = on_request
        self._on_connected = on_connect
        self.connected = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=settings.client_id or settings.username or "smartcharge-csms-node",
            clean_session=True,
            protocol=mqtt.MQTTv311,
        )
        settings.apply_to(self.client)
        self.client.will_set(nc.ALIVE_TOPIC, nc.dumps({"online": False}), qos=QOS, retain=True)
        self.client.reconnect_delay_set(BACKOFF_MIN_S, BACKOFF_MAX_S)  # type: ignore[arg-type]
        self.client.max_queued_messages_set(100_000)
        self.client.on_connect = self._connect
        self.client.on_disconnect = self._disconnect
        self.client.on_message = self._message
        self.client.on_socket_open = no_delay  # Nagle held each reply ~40 ms (delayed ACK)
        self._settings = settings
        self._keepalive = keepalive

    def start(self) -> None:
        self.client.connect_async(self._settings.host, self._settings.port, self._keepalive)
        self.client.loop_start()

    def stop(self) -> None:
        if self.connected.is_set():
            info = self.client.publish(nc.ALIVE_TOPIC, nc.dumps({"online": False}), QOS, True)
            info.wait_for_publish(2.0)
        self.client.disconnect()
        self.client.loop_stop()

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=QOS, retain=retain)

    def _connect(self, client: mqtt.Client, u: Any, flags: Any, reason: Any, p: Any) -> None:
        if reason.is_failure:
            log.warning("node channel: broker refused the connection: %s", reason)
            return
        client.subscribe(nc.REQUESTS_TOPIC, qos=QOS)
        client.publish(nc.ALIVE_TOPIC, nc.dumps({"online": True}), qos=QOS, retain=True)
        self.connected.set()
        self._on_connected()

    def _disconnect(self, client: mqtt.Client, u: Any, flags: Any, reason: Any, p: Any) -> None:
        self.connected.clear()

    def _message(self, client: mqtt.Client, u: Any, msg: mqtt.MQTTMessage) -> None:
        if msg.topic == nc.REQUESTS_TOPIC:
            self._on_request(bytes(msg.payload))


class NodePublisher(EvseListener):
    """Publishes the read model for the gateways (see the module docstring).

    Runs on the live host's thread, after :class:`~actors.fleet_view.FleetViewWriter`, so what
    it reads from the view already holds the events it was handed. Reservations are written by
    the reservation actor: :meth:`reservation_changed` publishes the view's current value
    under a lock, so two publishes racing leave the newest retained.
    """

    def __init__(
        self,
        view: FleetView,
        owners: SessionOwners,
        publish: Callable[..., None],
    ) -> None:
        self._view = view
        self._owners = owners
        self._publish = publish
        self._evses: dict[str, tuple[EvseState, str | None]] = {}
        self._stations: dict[str, tuple[StationDescriptor, bool]] = {}
        self._listed: dict[str, set[EvseKey]] = {}  # station id -> its EVSEs' keys, as published
        self._resync = threading.Event()
        self._reservation_lock = threading.Lock()

    # -- the channel's (re)connection, from paho's thread
    def resync(self) -> None:
        self._resync.set()

    # -- the live host's thread
    def evse_changed(self, event: EvseChanged) -> None:
        self._evses[event.state.evse_id] = (event.state, event.alert)

    def station_changed(self, event: StationChanged) -> None:
        self._stations[event.station.id] = (event.station, event.online)

    def batch_done(self) -> None:
        if self._resync.is_set():
            self._publish_all()
        for station, online in self._stations.values():
            self._station(station, online)
        self._stations.clear()
        for state, alert in self._evses.values():
            self._evse(state, alert)
        self._evses.clear()

    def tick(self) -> None:
        if self._resync.is_set():
            self._publish_all()

    def _publish_all(self) -> None:
        self._resync.clear()
        for station in self._view.stations():
            self._station(station.station, station.online)
        for view in self._view.evses():
            self._evse(view.state, view.alert)
        for evse_id in self._view.reservations():
            self.reservation_changed(evse_id)

    def _station(self, station: StationDescriptor, online: bool) -> None:
        keys = {evse_key(station.id, e.id) for e in station.evses}
        for retired in self._listed.get(station.id, set()) - keys:
            self._publish(nc.evse_topic(retired), b"", retain=True)  # clears the retained
        self._listed[station.id] = keys
        record = nc.StationRecord(station=station, online=online)
        self._publish(nc.station_topic(station.id), record.to_json(), retain=True)

    def _evse(self, state: EvseState, alert: str | None) -> None:
        view = self._view.evse(state.evse_id)
        session = state.session_id
        record = nc.EvseRecord(
            state=state,
            alert=alert,
            updated_at=view.updated_at if view is not None else self._view.now(),
            driver_id=None if session is None else self._owners.driver_of(session),
        )
        self._publish(nc.evse_topic(state.evse_id), record.to_json(), retain=True)

    # -- the reservation actor's thread
    def reservation_changed(self, evse_id: str) -> None:
        with self._reservation_lock:
            current = self._view.reservation(evse_id)
            payload = b"" if current is None else nc.reservation_to_json(current)
            self._publish(nc.reservation_topic(evse_id), payload, retain=True)

    # -- the hub's publishers' threads
    def live_event(self, event: LiveEvent) -> None:
        """Forward a live event the gateways cannot make themselves."""
        if event.kind not in LIVE_KINDS_BY_RECORD and not isinstance(event.data, EvseState):
            self._publish(nc.LIVE_TOPIC, nc.live_to_json(event))


class RpcStats:
    """What happened to the gateways' requests (counted; exposed by the node's metrics)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts: collections.Counter[str] = collections.Counter()

    def count(self, what: str) -> None:
        with self._lock:
            self.counts[what] += 1


_ARGS: Final[Mapping[str, Mapping[str, tuple[type, ...]]]] = {
    "reservation": {"evse_id": (str,)},
    "reserve": {"evse_id": (str,), "duration_s": (int, float, type(None))},
    "cancel_reservation": {"evse_id": (str,)},
    "start": {"evse_id": (str,), "target_soc": (int, float, type(None))},
    "stop": {"evse_id": (str,)},
    "set_maintenance": {"evse_id": (str,), "enabled": (bool,)},
    "info": {"evse_id": (str,)},
    "ack_alert": {"alert_id": (int,), "by": (str,)},
}
_NO_CALLER: Final = frozenset({"reservation", "info"})


class NodeRpc:
    """Runs requests on ``charging`` (``ack_alert`` on ``alerts``; see the module docstring);
    ``reply(topic, payload)``."""

    def __init__(
        self,
        charging: ChargingService,
        alerts: AlertLog | None = None,
        *,
        reply: Callable[[str, bytes], None],
        workers: int = 64,
        backlog: int = 1_000,
        remember: int = 20_000,
        clock_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
    ) -> None:
        self._charging = charging
        self._alerts = alerts
        self._reply = reply
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="node-rpc")
        self._backlog = backlog
        self._remember = remember
        self._clock_ms = clock_ms
        self._lock = threading.Lock()
        self._pending = 0
        self._seen: collections.OrderedDict[str, bytes | None] = collections.OrderedDict()
        self.stats = RpcStats()

    def stop(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def on_request(self, payload: bytes) -> None:
        """From paho's thread: check, dedupe, queue. Never blocks."""
        try:
            request = nc.Request.from_json(payload)
            self._check_args(request)
        except Exception as exc:  # paho's thread must live on: whatever it is, count and go on
            self.stats.count("malformed")
            log.warning("node: dropped a malformed request: %r", exc)
            return
        if self._clock_ms() > request.expires_at:
            self.stats.count("expired")
            return
        with self._lock:
            if request.id in self._seen:
                done = self._seen[request.id]
                self.stats.count("duplicate")
                if done is not None:
                    self._reply(request.reply_to, done)  # the first answer, again
                return
            if self._pending >= self._backlog:
                busy = nc.Reply(
                    id=request.id,
                    error=nc.encode_error(ActorUnavailableError("the CSMS node is busy")),
                )
                self.stats.count("busy")
                self._reply(request.reply_to, busy.to_json())
                return
            self._seen[request.id] = None
            while len(self._seen) > self._remember:
                self._seen.popitem(last=False)
            self._pending += 1
        self._pool.submit(self._run, request)

    def _check_args(self, request: nc.Request) -> None:
        allowed = _ARGS[request.op]
        for key, value in request.args.items():
            if key not in allowed or not isinstance(value, allowed[key]):
                raise ValueError(f"{request.op}: bad argument {key!r}")
        required = ("alert_id", "by") if request.op == "ack_alert" else ("evse_id",)
        for key in required:
            if key not in request.args or isinstance(request.args[key], bool):
                raise ValueError(f"{request.op}: no {key}")
        if (request.caller is None) != (request.op in _NO_CALLER):
            raise ValueError(
                f"{request.op}: caller {'missing' if request.caller is None else 'not taken'}"
            )

    def _run(self, request: nc.Request) -> None:
        try:
            if self._clock_ms() > request.expires_at:  # waited too long in the pool
                self.stats.count("expired")
                with self._lock:
                    self._seen.pop(request.id, None)
                return
            target = self._alerts if request.op == "ack_alert" else self._charging
            caller = () if request.caller is None else (request.caller,)
            try:
                if target is None:
                    raise SmartchargeError("this node keeps no alert log")
                result = getattr(target, request.op)(*caller, **request.args)
                reply = nc.Reply(id=request.id, result=nc.encode_result(result))
                self.stats.count("ok")
            except SmartchargeError as exc:
                reply = nc.Reply(id=request.id, error=nc.encode_error(exc))
                self.stats.count("refused")
            except Exception:
                log.exception("node: request %s (%s) failed", request.id, request.op)
                reply = nc.Reply(
                    id=request.id, error=nc.encode_error(SmartchargeError("internal error"))
                )
                self.stats.count("failed")
            payload = reply.to_json()
            with self._lock:
                if request.id in self._seen:
                    self._seen[request.id] = payload
            self._reply(request.reply_to, payload)
        finally:
            with self._lock:
                self._pending -= 1


def serve_node(
    *,
    settings: MqttSettings,
    view: FleetView,
    owners: SessionOwners,
    hub: LiveHub,
    charging: ChargingService,
    alerts: AlertLog | None = None,
    keepalive: int = 10,
) -> tuple[NodeChannel, NodePublisher, NodeRpc]:
    """Wire the three together (the caller starts the channel and adds the publisher to the
    live host); returns them for stopping."""
    channel: NodeChannel
    publisher = NodePublisher(
        view,
        owners,
        lambda topic, payload, retain=False: channel.publish(topic, payload, retain=retain),
    )
    rpc = NodeRpc(charging, alerts, reply=lambda topic, payload: channel.publish(topic, payload))
    channel = NodeChannel(
        settings, keepalive=keepalive, on_request=rpc.on_request, on_connect=publisher.resync
    )
    view.watch_reservations(publisher.reservation_changed)
    hub.add_tap(publisher.live_event)
    return channel, publisher, rpc
