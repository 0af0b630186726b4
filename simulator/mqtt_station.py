"""One station's MQTT connection (paho-mqtt 2.2), around a :class:`StationRunner`.

Thread map: :meth:`MqttStation.start` and :meth:`MqttStation.stop` run on the
caller's thread (the fleet's main thread); every paho callback runs on this
station's own network thread (``loop_start``), only parses and hands off to the
runner, and never raises into the loop. The protocol demands MQTT 3.1.1, QoS 1,
``client_id`` = station id with a persistent session, the retained
``StationOffline`` as last will (set before connecting), and the subscription
made inside ``on_connect`` so every reconnect restores it.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.reasoncodes import ReasonCode

from protocol import QOS, Message, commands_topic, encode
from protocol.mqtt_settings import (
    BACKOFF_MAX_S,
    BACKOFF_MIN_S,
    MqttSettings,
    parse_mqtt_url,
    read_password_file,
)
from simulator.persistence import StationStore
from simulator.runner import StationRunner
from simulator.station import StationSimulator

__all__ = ["BrokerAddress", "MqttStation", "password_path", "station_settings"]

log = logging.getLogger("simulator.mqtt")

#: Bound what paho buffers while the broker is away: past 65,535 ``publish()`` fails
#: silently (``docs/facts.md``, paho-mqtt).
MAX_QUEUED_MESSAGES = 10_000


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    host: str
    port: int = 1883

    @classmethod
    def from_url(cls, url: str) -> BrokerAddress:
        """``mqtt://host:port`` (``tcp://`` is accepted too; the port defaults to 1883)."""
        if "://" not in url:
            raise ValueError(f"expected mqtt://host:port, not {url!r}")
        settings = parse_mqtt_url(url, env={})
        return cls(host=settings.host, port=settings.port)

    def settings(self) -> MqttSettings:
        return MqttSettings(host=self.host, port=self.port)


def password_path(data_dir: str | Path, station_id: str) -> Path:
    """Where a simulated station keeps its MQTT password: ``<data-dir>/stations/<id>.password``
    (mode 0600, written by whoever provisioned the station)."""
    return Path(data_dir) / "stations" / f"{station_id}.password"


def station_settings(base: MqttSettings, station_id: str, data_dir: str | Path) -> MqttSettings:
    """A station's own connection: user name and client id = its station id, its password
    from :func:`password_path` (no password file: no credentials, for an open broker)."""
    path = password_path(data_dir, station_id)
    if not path.exists():
        return base.with_client_id(station_id)
    return MqttSettings(
        host=base.host,
        port=base.port,
        username=station_id,
        password=read_password_file(path),
        tls=base.tls,
        ca_file=base.ca_file,
        client_id=station_id,
    )


def _no_delay(client: mqtt.Client, userdata: Any, sock: Any) -> None:
    """paho ``on_socket_open``: no Nagle delay on small QoS 1 packets (replies, statuses)."""
    with contextlib.suppress(OSError, AttributeError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class MqttStation:
    """A station on the broker: one paho client, one network thread."""

    def __init__(
        self,
        simulator: StationSimulator,
        broker: BrokerAddress | MqttSettings,
        *,
        store: StationStore | None = None,
        keepalive: int = 10,
        save_every: float = 2.0,
    ) -> None:
        self.runner = StationRunner(simulator, self.publish, store=store, save_every=save_every)
        self.broker = broker if isinstance(broker, MqttSettings) else broker.settings()
        self.keepalive = keepalive
        self._connected = threading.Event()
        self._failed_publishes = 0
        sid = simulator.station_id
        self._commands_topic = commands_topic(sid)
        self._client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=sid,
            clean_session=False,
            protocol=mqtt.MQTTv311,
        )
        self.broker.apply_to(self._client)
        self._client.max_queued_messages_set(MAX_QUEUED_MESSAGES)
        self._client.reconnect_delay_set(min_delay=BACKOFF_MIN_S, max_delay=BACKOFF_MAX_S)  # type: ignore[arg-type]
        self._client.on_connect = self._on_connect
        self._client.on_socket_open = _no_delay
        self._client.on_disconnect = self._on_disconnect
        self._client.on_connect_fail = self._on_connect_fail
        self._client.on_message = self._on_message

    @property
    def station_id(self) -> str:
        return self.runner.station_id

    def start(self) -> None:
        """Set the last will, then connect in the background (paho retries until it works)."""
        topic, payload, retain = encode(self.runner.simulator.last_will())
        self._client.will_set(topic, payload, qos=QOS, retain=retain)
        self._client.connect_async(self.broker.host, self.broker.port, keepalive=self.keepalive)
        self._client.loop_start()

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    def is_connected(self) -> bool:
        return self._connected.is_set()

    def tick(self, now: float) -> None:
        """Runs on the fleet ticker thread."""
        self.runner.tick(now)

    def stop(self, timeout: float = 5.0) -> None:
        """Publish the retained offline state, disconnect, stop the thread, save for good."""
        if self._connected.is_set():
            self.runner.wait_delivered(timeout)  # what the outbox kept, before saying goodbye
            topic, payload, retain = encode(self.runner.shutdown_message())
            info = self._client.publish(topic, payload, qos=QOS, retain=retain)
            try:
                info.wait_for_publish(timeout)
            except (RuntimeError, ValueError) as exc:
                log.warning(
                    "Station %s could not publish its offline state: %s", self.station_id, exc
                )
        self._client.disconnect()
        self._client.loop_stop()
        self.runner.save()

    def publish(self, message: Message) -> mqtt.MQTTMessageInfo | None:
        """Queue one message (QoS 1); failures are logged, not raised (the loop retries).

        Returns paho's handle, whose ``is_published()`` turns true at the PUBACK (the
        runner's outbox waits for it), or ``None`` if paho refused the message."""
        topic, payload, retain = encode(message)
        info = self._client.publish(topic, payload, qos=QOS, retain=retain)
        rc = info.rc
        if rc in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):  # NO_CONN: sent on reconnect
            return info
        self._failed_publishes += 1
        if self._failed_publishes in (1, 10) or self._failed_publishes % 1000 == 0:
            log.warning(
                "Station %s failed to publish on %s: %s (%d failures so far)",
                self.station_id,
                topic,
                mqtt.error_string(rc),
                self._failed_publishes,
            )
        return None

    # ------------------------------------------------------------------ paho thread

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: Any,
    ) -> None:
        try:
            if reason_code.is_failure:
                log.warning("Station %s: connection refused (%s)", self.station_id, reason_code)
                return
            client.subscribe(self._commands_topic, qos=QOS)
            self.runner.connected()
            self._connected.set()
            log.info(
                "Station %s connected to %s:%d", self.station_id, self.broker.host, self.broker.port
            )
        except Exception:
            log.exception("Station %s failed to handle its connection", self.station_id)

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Any,
    ) -> None:
        self._connected.clear()
        self.runner.disconnected()  # from now on, only the outbox keeps what matters
        if reason_code.is_failure:
            log.warning("Station %s disconnected (%s), reconnecting", self.station_id, reason_code)

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        log.debug(
            "Station %s cannot reach %s:%d, retrying",
            self.station_id,
            self.broker.host,
            self.broker.port,
        )

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        try:
            topic = message.topic
        except UnicodeDecodeError:
            log.warning("Station %s: dropping a message with a non-UTF-8 topic", self.station_id)
            return
        self.runner.received(topic, bytes(message.payload), retained=bool(message.retain))
