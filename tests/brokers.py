"""Test helpers for real MQTT brokers: a synchronous paho test client and socket inspection.

Everything here waits on events and queues with timeouts; nothing sleeps to synchronise.
"""

from __future__ import annotations

import contextlib
import os
import queue
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from protocol.mqtt_settings import MqttSettings
from protocol.mqtt_settings import parse_mqtt_url as parse_settings

DEFAULT_TIMEOUT = 10.0
REPO_ROOT = Path(__file__).resolve().parent.parent


def parse_mqtt_url(url: str) -> tuple[str, int]:
    """``mqtt[s]://[user@]host:port`` -> (host, port) (a thin compatibility over
    :func:`protocol.mqtt_settings.parse_mqtt_url`)."""
    settings = parse_settings(url, env={})
    return settings.host, settings.port


@dataclass(frozen=True)
class Received:
    topic: str
    payload: bytes
    qos: int
    retain: bool


class MqttTestClient:
    """A paho client (callback API v2, MQTT 3.1.1) with a blocking, timeout-bounded API.

    - ``connect()`` returns once CONNACK arrived (raises on refusal/timeout);
    - ``subscribe()`` returns once SUBACK arrived;
    - ``publish()`` returns once the broker acknowledged (QoS 1/2) or the packet left (QoS 0);
    - ``get()`` returns the next received message or raises ``queue.Empty`` after ``timeout``;
    - ``kill()`` closes the TCP connection without DISCONNECT, so the broker sends the last will.
    """

    def __init__(
        self,
        url: str,
        client_id: str | None = None,
        *,
        clean_session: bool = True,
        keepalive: int = 30,
        will: tuple[str, bytes | str, int, bool] | None = None,
        username: str | None = None,
        password: str | None = None,
        ca_file: str | Path | None = None,
        settings: MqttSettings | None = None,
    ) -> None:
        """``username``/``password``/``ca_file`` (or whole ``settings``): the credentials and
        TLS trust; the URL gives the host, port and scheme."""
        if settings is None:
            settings = parse_settings(url, ca_file=ca_file, env={})
            if username is not None:
                settings = replace(settings, username=username, password=password)
        self.settings = settings
        self.host, self.port = settings.host, settings.port
        self.client_id = client_id or f"test-{uuid.uuid4().hex[:12]}"
        self.keepalive = keepalive
        self.messages: queue.Queue[Received] = queue.Queue()
        self._connected = threading.Event()
        self._disconnected = threading.Event()
        self._connect_rc: ReasonCode | None = None
        self._subacks: dict[int, threading.Event] = {}
        self._lock = threading.Lock()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            clean_session=clean_session,
            protocol=mqtt.MQTTv311,
        )
        if will is not None:
            topic, payload, qos, retain = will
            self.client.will_set(topic, payload, qos=qos, retain=retain)
        settings.apply_to(self.client)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe

    # -- paho callbacks (network thread) -----------------------------------------------------

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self._connect_rc = reason_code
        self._disconnected.clear()
        self._connected.set()

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self._connected.clear()
        self._disconnected.set()

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        self.messages.put(Received(msg.topic, bytes(msg.payload), msg.qos, bool(msg.retain)))

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: object,
        mid: int,
        reason_codes: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        with self._lock:
            event = self._subacks.setdefault(mid, threading.Event())
        event.set()

    # -- blocking API ------------------------------------------------------------------------

    def connect(self, timeout: float = DEFAULT_TIMEOUT) -> MqttTestClient:
        self.client.connect(self.host, self.port, keepalive=self.keepalive)
        self.client.loop_start()
        if not self._connected.wait(timeout):
            raise TimeoutError(f"{self.client_id}: no CONNACK from {self.host}:{self.port}")
        if self._connect_rc is not None and self._connect_rc.is_failure:
            raise ConnectionError(f"{self.client_id}: connection refused: {self._connect_rc}")
        return self

    def subscribe(self, topic: str, qos: int = 1, timeout: float = DEFAULT_TIMEOUT) -> None:
        # Hold the lock across subscribe() so a fast SUBACK finds our event, not a fresh one.
        with self._lock:
            rc, mid = self.client.subscribe(topic, qos=qos)
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS or mid is None:
                raise ConnectionError(f"{self.client_id}: subscribe({topic!r}) failed: rc={rc}")
            event = self._subacks.setdefault(mid, threading.Event())
        if not event.wait(timeout):
            raise TimeoutError(f"{self.client_id}: no SUBACK for {topic!r}")

    def publish(
        self,
        topic: str,
        payload: bytes | str,
        qos: int = 1,
        retain: bool = False,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            raise ConnectionError(f"{self.client_id}: publish to {topic!r} failed: rc={info.rc}")
        info.wait_for_publish(timeout)
        if not info.is_published():
            raise TimeoutError(f"{self.client_id}: publish to {topic!r} not acknowledged")

    def get(self, timeout: float = DEFAULT_TIMEOUT) -> Received:
        """The next message; ``queue.Empty`` if none arrives within ``timeout``."""
        return self.messages.get(timeout=timeout)

    def get_on(self, topic: str, timeout: float = DEFAULT_TIMEOUT) -> Received:
        """The next message on exactly ``topic``, skipping others (amqtt leaks retained ones)."""
        deadline = _Deadline(timeout)
        while True:
            msg = self.messages.get(timeout=deadline.remaining())
            if msg.topic == topic:
                return msg

    def assert_nothing(self, timeout: float = 0.5) -> None:
        """Assert that no message arrives within ``timeout`` (a bounded wait, not a sync sleep)."""
        with contextlib.suppress(queue.Empty):
            msg = self.messages.get(timeout=timeout)
            raise AssertionError(f"{self.client_id}: unexpected message {msg}")

    def kill(self) -> None:
        """Drop the TCP connection without DISCONNECT, like a crashed station."""
        sock = self.client.socket()
        self.client.loop_stop()  # no reconnect: the network thread is gone first
        self._connected.clear()
        if isinstance(sock, socket.socket):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def close(self, timeout: float = DEFAULT_TIMEOUT) -> None:
        """Disconnect cleanly (no last will) and stop the network thread."""
        if self._connected.is_set():
            self.client.disconnect()
            self._disconnected.wait(timeout)
        self.client.loop_stop()


MqttClientFactory = Callable[..., MqttTestClient]
"""Type of the ``mqtt_client`` fixture: ``mqtt_client(url, client_id=None, **kw)``."""


class _Deadline:
    def __init__(self, timeout: float) -> None:
        self._end = time.monotonic() + timeout

    def remaining(self) -> float:
        return max(0.0, self._end - time.monotonic())


def listening_sockets(pid: int) -> list[tuple[str, int]]:
    """(address, port) of every TCP socket in LISTEN state owned by process ``pid`` (Linux).

    Reads /proc/PID/fd for socket inodes and /proc/net/tcp{,6} for their local addresses.
    """
    inodes: set[str] = set()
    fd_dir = Path(f"/proc/{pid}/fd")
    for fd in fd_dir.iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[len("socket:[") : -1])
    found: list[tuple[str, int]] = []
    for table, family in (("/proc/net/tcp", socket.AF_INET), ("/proc/net/tcp6", socket.AF_INET6)):
        with contextlib.suppress(FileNotFoundError), open(table) as f:
            next(f)
            for line in f:
                fields = line.split()
                local, state, inode = fields[1], fields[3], fields[9]
                if state != "0A" or inode not in inodes:  # 0A = LISTEN
                    continue
                addr_hex, port_hex = local.split(":")
                raw = bytes.fromhex(addr_hex)
                # /proc prints the address as host-order 32-bit words
                words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
                found.append((socket.inet_ntop(family, words), int(port_hex, 16)))
    return found
