"""A gateway's side of the node-gateway contract (:mod:`actors.node_contract`): no actor.

:class:`NodeClient` keeps a replica of the node's read model (a :class:`FleetView` fed by the
retained EVSE, station and reservation topics: a new gateway is current as soon as it has
subscribed), a local :class:`LiveHub` for its own event streams (EVSE and session events made
from the EVSE records, the rest forwarded by the node), and sends the node requests, each
answered on this gateway's own replies topic or failed after a time-out.

:class:`RemoteCsms` is the :class:`~actors.system.Csms` the gateway's resources use, so the
same Falcon app runs in the node's process or apart from it.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Mapping
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, Final

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from actors import node_contract as nc
from actors.bridge import BridgeStats
from actors.charging import Caller, Started
from actors.fleet_view import FleetView
from actors.live import LiveHub
from actors.messages import CommandOutcome
from actors.metrics import CsmsMetrics, RestartCounter
from actors.mqtt_client import no_delay
from actors.reservations import Reservation
from protocol import QOS, CommandArgs, CommandName
from protocol.mqtt_settings import BACKOFF_MAX_S, BACKOFF_MIN_S, MqttSettings
from storage import Alert
from storage.errors import ActorUnavailableError, CommandTimeoutError

__all__ = ["NodeClient", "RemoteAlerts", "RemoteCharging", "RemoteCsms"]

log = logging.getLogger(__name__)

START_WITHIN_S: Final = 5.0
"""A request the node has not begun within this is never run (``expires_at``)."""
ANSWER_WITHIN_S: Final = 20.0
"""How long a gateway waits for the node's answer: longer than a command's own time-out
(10 s, plus the EVSE actor's grace), so a command the node ran is never reported as lost."""


class NodeClient:
    """The replica, the local hub and the requests (see the module docstring)."""

    def __init__(
        self,
        settings: MqttSettings,
        *,
        client_id: str | None = None,
        keepalive: int = 10,
        start_within_s: float = START_WITHIN_S,
        answer_within_s: float = ANSWER_WITHIN_S,
    ) -> None:
        self.client_id = client_id or f"smartcharge-gw-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.view = FleetView()
        self.hub = LiveHub()
        self.connected = threading.Event()
        self.node_online = threading.Event()
        self.start_within_s = start_within_s
        self.answer_within_s = answer_within_s
        self._replies = nc.replies_topic(self.client_id)
        self._waiting: dict[str, Future[nc.Reply]] = {}
        self._drivers: dict[str, str] = {}
        """Session id -> its driver, from the EVSE records (running sessions only)."""
        self._lock = threading.Lock()
        self.dropped = 0
        self._settings = settings
        self._keepalive = keepalive
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            clean_session=True,
            protocol=mqtt.MQTTv311,
        )
        settings.apply_to(self.client)
        self.client.reconnect_delay_set(BACKOFF_MIN_S, BACKOFF_MAX_S)  # type: ignore[arg-type]
        self.client.on_connect = self._connect
        self.client.on_disconnect = self._disconnect
        self.client.on_message = self._message
        self.client.on_socket_open = no_delay  # Nagle held each request ~40 ms (delayed ACK)

    def start(self) -> NodeClient:
        self.client.connect_async(self._settings.host, self._settings.port, self._keepalive)
        self.client.loop_start()
        return self

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
        with self._lock:
            waiting, self._waiting = self._waiting, {}
        for future in waiting.values():
            future.cancel()

    # ------------------------------------------------------------------ requests

    def call(
        self, op: str, caller: Caller | None = None, args: Mapping[str, Any] | None = None
    ) -> Any:
        """Run ``op`` on the node and return its result, or raise its error again.

        Raises :class:`ActorUnavailableError` (503) when the node is not there, and
        :class:`CommandTimeoutError` (504) when it did not answer in time.
        """
        if not (self.connected.is_set() and self.node_online.is_set()):
            raise ActorUnavailableError("the CSMS node is not reachable; nothing was sent")
        now_ms = time.time_ns() // 1_000_000
        request = nc.Request(
            id=uuid.uuid4().hex,
            reply_to=self._replies,
            expires_at=now_ms + int(self.start_within_s * 1000),
            op=op,
            caller=caller,
            args=dict(args or {}),
        )
        future: Future[nc.Reply] = Future()
        with self._lock:
            self._waiting[request.id] = future
        try:
            self.client.publish(nc.REQUESTS_TOPIC, request.to_json(), qos=QOS)
            reply = future.result(timeout=self.answer_within_s)
        except FutureTimeout:
            raise CommandTimeoutError(
                f"the CSMS node did not answer within {self.answer_within_s:.0f} s"
            ) from None
        finally:
            with self._lock:
                self._waiting.pop(request.id, None)
        if reply.error is not None:
            raise nc.decode_error(reply.error)
        return nc.decode_result(reply.result)

    def _node_gone(self) -> None:
        """The node went away: a request it began may or may not have run; say so at once."""
        with self._lock:
            waiting = list(self._waiting.values())
        for future in waiting:
            if not future.done():
                future.set_exception(
                    ActorUnavailableError(
                        "the CSMS node went away while handling this request: "
                        "check its outcome before trying again"
                    )
                )

    # ------------------------------------------------------------------ paho's thread

    def _connect(self, client: mqtt.Client, u: Any, flags: Any, reason: Any, p: Any) -> None:
        if reason.is_failure:
            log.warning("gateway: broker refused the connection: %s", reason)
            return
        client.subscribe(
            [
                (nc.ALIVE_TOPIC, QOS),
                (nc.STATIONS_FILTER, QOS),
                (nc.EVSES_FILTER, QOS),
                (nc.RESERVATIONS_FILTER, QOS),
                (nc.LIVE_TOPIC, QOS),
                (self._replies, QOS),
            ]
        )
        self.connected.set()

    def _disconnect(self, client: mqtt.Client, u: Any, flags: Any, reason: Any, p: Any) -> None:
        self.connected.clear()

    def _message(self, client: mqtt.Client, u: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            self._apply(msg.topic, bytes(msg.payload))
        except Exception as exc:  # paho's thread must live on: count it and go on
            self.dropped += 1
            log.warning("gateway: dropped a malformed message on %s: %r", msg.topic, exc)

    def _apply(self, topic: str, payload: bytes) -> None:
        if topic == self._replies:
            reply = nc.Reply.from_json(payload)
            with self._lock:
                future = self._waiting.get(reply.id)
            if future is not None and not future.done():
                future.set_result(reply)
        elif topic.startswith(f"{nc.NODE_ROOT}/evses/"):
            if payload:  # an empty retained message: a retired EVSE, gone with its station
                record = nc.EvseRecord.from_json(payload)
                self._note_driver(record)
                self.view.put_evse(record.state, alert=record.alert)
                self.hub.publish("evse", record.state, public=True)
                if record.driver_id is not None:
                    self.hub.publish("session", record.state, user_id=record.driver_id)
        elif topic.startswith(f"{nc.NODE_ROOT}/station/"):
            station = nc.StationRecord.from_json(payload)
            self.view.put_station(station.station, station.online)
        elif topic.startswith(f"{nc.NODE_ROOT}/reservations/"):
            evse_id = nc.last_level(topic)
            self.view.put_reservation(
                evse_id, nc.reservation_from_json(payload) if payload else None
            )
        elif topic == nc.LIVE_TOPIC:
            kind, data, user_id, public = nc.live_from_json(payload)
            self.hub.publish(kind, data, user_id=user_id, public=public)
        elif topic == nc.ALIVE_TOPIC:
            if payload and json.loads(payload).get("online") is True:
                self.node_online.set()
            else:
                self.node_online.clear()
                self._node_gone()

    def _note_driver(self, record: nc.EvseRecord) -> None:
        """Keep the driver of each running session (the view keeps only the EVSE's state)."""
        previous = self.view.evse(record.state.evse_id)
        if previous is not None and previous.state.session_id != record.state.session_id:
            self._drivers.pop(previous.state.session_id or "", None)
        if record.state.session_id is not None and record.driver_id is not None:
            self._drivers[record.state.session_id] = record.driver_id

    def session_driver(self, session_id: str) -> str | None:
        return self._drivers.get(session_id)


class RemoteCharging:
    """:class:`~actors.charging.ChargingService`'s methods, run on the node."""

    def __init__(self, node: NodeClient) -> None:
        self._node = node

    def reservation(self, evse_id: str) -> Reservation | None:
        found: Reservation | None = self._node.call("reservation", args={"evse_id": evse_id})
        return found

    def reserve(self, caller: Caller, evse_id: str, duration_s: float | None = None) -> Reservation:
        args = {"evse_id": evse_id, "duration_s": duration_s}
        reservation: Reservation = self._node.call("reserve", caller, args)
        return reservation

    def cancel_reservation(self, caller: Caller, evse_id: str) -> Reservation:
        cancelled: Reservation = self._node.call("cancel_reservation", caller, {"evse_id": evse_id})
        return cancelled

    def start(self, caller: Caller, evse_id: str, target_soc: float | None = None) -> Started:
        args = {"evse_id": evse_id, "target_soc": target_soc}
        started: Started = self._node.call("start", caller, args)
        return started

    def stop(self, caller: Caller, evse_id: str) -> CommandOutcome:
        outcome: CommandOutcome = self._node.call("stop", caller, {"evse_id": evse_id})
        return outcome

    def set_maintenance(self, caller: Caller, evse_id: str, enabled: bool) -> CommandOutcome:
        args = {"evse_id": evse_id, "enabled": enabled}
        outcome: CommandOutcome = self._node.call("set_maintenance", caller, args)
        return outcome

    def info(self, evse_id: str) -> CommandOutcome:
        outcome: CommandOutcome = self._node.call("info", args={"evse_id": evse_id})
        return outcome

    def reservation_count(self, evse_id: str) -> Reservation | None:
        """From the replica (no request)."""
        found: Reservation | None = self._node.view.reservation(evse_id)
        return found

    def session_driver(self, session_id: str) -> str | None:
        """From the replica's EVSE records (no request)."""
        return self._node.session_driver(session_id)


class RemoteAlerts:
    """The node's alert log, as a gateway acks an alert (the op ``ack_alert``): the node
    stores the ack and tells every gateway's streams (``alert_ack``)."""

    def __init__(self, node: NodeClient) -> None:
        self._node = node

    def ack_alert(self, caller: Caller, alert_id: int, by: str) -> Alert:
        alert: Alert = self._node.call("ack_alert", caller, {"alert_id": alert_id, "by": by})
        return alert


class RemoteCsms:
    """The :class:`~actors.system.Csms` of a gateway that runs apart from the node."""

    def __init__(self, node: NodeClient) -> None:
        self.node = node
        self.view = node.view
        self.hub = node.hub
        self.charging = RemoteCharging(node)
        self.alerts = RemoteAlerts(node)
        self.mqtt_connected = node.connected
        self.metrics = CsmsMetrics(
            view=node.view, bridge=BridgeStats(), hub=node.hub, restarts=RestartCounter()
        )
        """This gateway's own figures (its replica and streams); the node's ingest figures
        are the node's."""

    def command(
        self,
        evse_id: str,
        command: CommandName,
        args: CommandArgs = None,
        timeout_s: float | None = None,
    ) -> CommandOutcome:
        if command is CommandName.INFO:
            return self.charging.info(evse_id)
        raise ActorUnavailableError(f"{command} is sent through the charging service")
