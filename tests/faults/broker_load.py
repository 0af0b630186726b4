"""Helpers for the broker fault tests: a broker to kill and restart on its port, a publisher
that keeps the broker's acknowledgement of every message it sent, and a traffic counter.

Nothing here sleeps to synchronise: waits are on events and semaphores with timeouts.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from bench._publisher import Stream
from gateway.broker import EmbeddedBroker
from protocol import all_station_topics_filter
from protocol.mqtt_settings import BACKOFF_MAX_S, BACKOFF_MIN_S, parse_mqtt_url

__all__ = ["AckedPublisher", "RestartableBroker", "TrafficCounter"]


class RestartableBroker:
    """The embedded Mosquitto (production config) that a test can ``kill -9`` and start again
    on the same port with the same persistence directory, as a supervisor would."""

    def __init__(self, data_dir: Path) -> None:
        self.broker = EmbeddedBroker(port=0, data_dir=data_dir, prefer="mosquitto").start()
        self.port = self.broker.port
        self.url = self.broker.url
        self.data_dir = data_dir

    @property
    def pid(self) -> int:
        pid = self.broker.pid
        assert pid is not None, "the broker is not running"
        return pid

    def kill(self) -> None:
        """SIGKILL the mosquitto process: no will, no final snapshot, no goodbye."""
        pid = self.broker.pid
        assert pid is not None, "the broker is not running"
        os.kill(pid, signal.SIGKILL)
        self.broker.stop()  # reaps it

    def restart(self) -> float:
        """Start it again on its port; the wall-clock time it answered CONNECT."""
        self.broker = EmbeddedBroker(
            port=self.port, data_dir=self.data_dir, prefer="mosquitto", start_timeout=15
        ).start()
        return time.time()

    def stop(self) -> None:
        self.broker.stop()


@dataclass(frozen=True, slots=True)
class Sent:
    evse: int  # index in the stream
    seq: int
    is_status: bool
    info: mqtt.MQTTMessageInfo


class AckedPublisher:
    """Bench station traffic (:class:`bench._publisher.Stream`: ``bs00000`` ... with a rising
    ``seq`` and energy ``10 * seq`` Wh per EVSE, every 10th message a status toggling Charging
    <-> SuspendedEV) at a steady rate, QoS 1, keeping paho's handle of every message: its
    ``is_published()`` turns true at the broker's PUBACK. At most ``window`` unacknowledged.
    While the broker is away the pacing thread waits; paho reconnects by itself and resends
    what was in flight, and only then does new traffic go out (per-EVSE order kept)."""

    def __init__(self, url: str, *, stations: int, evses_per_station: int, window: int = 2000):
        self.stream = Stream(stations, evses_per_station)
        self.sent: list[Sent] = []
        self._lock = threading.Lock()
        self._window = threading.Semaphore(window)
        self._acks = threading.Condition()
        self._stopping = threading.Event()
        self._connected = threading.Event()
        self.disconnected = threading.Event()
        self._resync = False
        self._thread: threading.Thread | None = None
        self.connects = 0
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id="fault-publisher",
            clean_session=False,
            protocol=mqtt.MQTTv311,
        )
        self.client.max_inflight_messages_set(window)
        self.client.reconnect_delay_set(min_delay=BACKOFF_MIN_S, max_delay=BACKOFF_MAX_S)  # type: ignore[arg-type]
        self.client.on_publish = self._on_publish
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        settings = parse_mqtt_url(url, env={})
        self.client.connect_async(settings.host, settings.port, keepalive=5)
        self.client.loop_start()
        if not self._connected.wait(10):
            raise TimeoutError("the publisher could not connect")

    def _on_publish(self, *args: object) -> None:
        self._window.release()
        with self._acks:
            self._acks.notify_all()

    def _on_connect(self, *args: object) -> None:
        self.connects += 1
        self._connected.set()

    def _on_disconnect(self, *args: object) -> None:
        self._resync = True
        self._connected.clear()
        self.disconnected.set()

    def _send(self, topic: str, payload: bytes, evse: int, seq: int) -> None:
        while not self._connected.wait(0.5):
            if self._stopping.is_set():
                return
        if self._resync:
            # As a station's outbox does: what was in flight goes first. paho sends what is
            # published between the TCP connect and its CONNACK handling (on_connect included)
            # before it retransmits older messages, and the CSMS drops those as stale.
            self.settle(30)
            self._resync = False
        while not self._window.acquire(timeout=0.5):
            if self._stopping.is_set():
                return
        info = self.client.publish(topic, payload, qos=1)
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            raise RuntimeError(f"publish refused: {mqtt.error_string(info.rc)}")
        with self._lock:
            self.sent.append(Sent(evse, seq, topic.endswith("/status"), info))

    def hello(self) -> None:
        """Births of every station, then a Charging status per EVSE."""
        for topic, payload in self.stream.births():
            self._send(topic, payload, -1, 0)
        for i in range(self.stream.evses):
            topic, payload, seq = self.stream.status(i, int(time.time() * 1000))
            self._send(topic, payload, i, seq)

    def start(self, rate: float) -> None:
        self._thread = threading.Thread(target=self._run, args=(rate,), daemon=True)
        self._thread.start()

    def _run(self, rate: float) -> None:
        period, k, start = 1.0 / rate, 0, time.monotonic()
        while not self._stopping.is_set():
            ahead = start + k * period - time.monotonic()
            if ahead > 0:
                self._stopping.wait(ahead)
            elif ahead < -1.0:  # back from an outage: go on at the rate, do not burst
                start, k = time.monotonic(), 0
            topic, payload, i, seq = self.stream.next(k, int(time.time() * 1000))
            self._send(topic, payload, i, seq)
            k += 1

    def stop(self) -> None:
        """Stop publishing (what was handed to paho is still delivered)."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def settle(self, timeout: float) -> bool:
        """Wait until the broker acknowledged every message sent."""
        deadline = time.monotonic() + timeout
        with self._acks:
            while not all(_acked(s.info) for s in self.snapshot()):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._acks.wait(min(remaining, 0.5))
        return True

    def snapshot(self) -> list[Sent]:
        with self._lock:
            return list(self.sent)

    def acked(self) -> int:
        return sum(_acked(s.info) for s in self.snapshot())

    def last_acked(self) -> dict[str, int]:
        """``{CSMS EVSE id: seq}`` of the last acknowledged message of each EVSE."""
        last: dict[str, int] = {}
        for s in self.snapshot():
            if s.evse >= 0 and _acked(s.info):
                key = self.stream.keys[s.evse]
                last[key] = max(last.get(key, 0), s.seq)
        return last

    def close(self) -> None:
        self.stop()
        self.client.disconnect()
        self.client.loop_stop()


def _acked(info: mqtt.MQTTMessageInfo) -> bool:
    """True once the broker's PUBACK came; a message queued while the client was away (rc
    NO_CONN) is sent on reconnect, and paho's ``is_published()`` raises for it."""
    if info.rc == mqtt.MQTT_ERR_NO_CONN:
        return info._published
    return info.is_published()


class TrafficCounter:
    """A QoS 0 subscriber to every station topic: the load the broker actually carried."""

    def __init__(self, url: str) -> None:
        self.count = 0
        self._connected = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="fault-traffic-counter")
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(min_delay=BACKOFF_MIN_S, max_delay=BACKOFF_MAX_S)  # type: ignore[arg-type]
        settings = parse_mqtt_url(url, env={})
        self.client.connect_async(settings.host, settings.port, keepalive=5)
        self.client.loop_start()
        if not self._connected.wait(10):
            raise TimeoutError("the traffic counter could not connect")

    def _on_connect(self, client: mqtt.Client, *args: object) -> None:
        client.subscribe(all_station_topics_filter(), qos=0)  # again after every reconnect
        self._connected.set()

    def _on_message(self, *args: object) -> None:
        self.count += 1  # the network thread is the only writer

    def rate(self, seconds: float) -> float:
        """Messages per second seen over the next ``seconds`` (a measurement window)."""
        before, began = self.count, time.monotonic()
        threading.Event().wait(seconds)
        return (self.count - before) / (time.monotonic() - began)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@contextmanager
def closing_all(*things: AckedPublisher | TrafficCounter) -> Iterator[None]:
    try:
        yield
    finally:
        for thing in reversed(things):
            thing.close()
