"""One OCPP charge point as a protocol v2 station on the broker: its MQTT connection and
its transactions.

:class:`StationMqtt` is the charge point's own MQTT connection (paho, driven by the
translator's event loop: no thread of its own, ``gateway.mqtt_asyncio``), made with the charge
point's own station credentials: user name and client id = the charge point id, password = the
one it gave at the WebSocket handshake (HTTP Basic, checked against the station's hash first).
The broker's ACL then lets the translator publish exactly what that station may publish and
receive exactly its commands (``docs/broker-security.md``), and the last will marks the station
offline if the translator itself dies.

:class:`TransactionStore` hands out OCPP transaction ids and remembers which of our sessions
each one is, in ``<data dir>/ocpp/transactions.jsonl``, so a StopTransaction sent after a
reconnection (or retransmitted) finds its session.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Final

import paho.mqtt.client as mqtt
from paho.mqtt.reasoncodes import ReasonCode

from gateway.mqtt_asyncio import MqttLoopDriver
from protocol import (
    QOS,
    CommandRequest,
    Message,
    ProtocolError,
    StationOffline,
    commands_topic,
    encode,
    parse,
)
from protocol.mqtt_settings import BACKOFF_MAX_S, BACKOFF_MIN_S, MqttSettings

__all__ = ["StationMqtt", "TransactionRecord", "TransactionStore"]

log = logging.getLogger("gateway.ocpp")

MAX_TRANSACTIONS_KEPT: Final = 10_000


class StationMqtt:
    """A charge point's MQTT connection on the translator's event loop (``driver``, no thread
    of its own); commands go to ``on_command`` on the loop. Reconnects by itself (``BACKOFF_MIN_S``
    doubling to ``BACKOFF_MAX_S``, as paho's own loop would) until :meth:`stop`."""

    def __init__(
        self,
        settings: MqttSettings,
        station_id: str,
        password: str,
        driver: MqttLoopDriver,
        on_command: Callable[[CommandRequest], None],
        *,
        keepalive: int = 10,
    ) -> None:
        self.station_id = station_id
        self._settings = MqttSettings(
            host=settings.host,
            port=settings.port,
            username=station_id,
            password=password,
            tls=settings.tls,
            ca_file=settings.ca_file,
            client_id=station_id,
        )
        self._driver = driver
        self._on_command = on_command
        self._keepalive = keepalive
        self._connected = asyncio.Event()
        self._wake = asyncio.Event()  # the connection was lost, or stop()
        self._stopping = False
        self._accepted = False  # since the last reconnection
        self._keeper: asyncio.Task[None] | None = None
        self._published: dict[int, asyncio.Future[None]] = {}
        self._disconnected: asyncio.Future[None] | None = None
        self._topic = commands_topic(station_id)
        self._client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=station_id,
            clean_session=True,  # commands are never worth running late (docs/protocol.md 6.3)
            protocol=mqtt.MQTTv311,
        )
        self._settings.apply_to(self._client)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        self._client.on_publish = self._on_publish
        driver.attach(self._client)

    @property
    def connected(self) -> bool:
        """Accepted by the broker, and not lost since."""
        return self._connected.is_set()

    async def start(self, timeout: float) -> bool:
        """Connect (last will set first); True once the broker accepted us."""
        will = StationOffline(station_id=self.station_id, ts=_now_ms())  # type: ignore[arg-type]
        topic, payload, retain = encode(will)
        self._client.will_set(topic, payload, qos=QOS, retain=retain)
        self._client.connect_async(self._settings.host, self._settings.port, self._keepalive)
        self._keeper = asyncio.ensure_future(self._keep_connected())
        try:
            await asyncio.wait_for(self._connected.wait(), timeout)
        except TimeoutError:
            return False
        return True

    def is_connected(self) -> bool:
        """The broker took the station (once; paho reconnects by itself after)."""
        return self._connected.is_set()

    async def wait_connected(self) -> None:
        await self._connected.wait()

    async def _keep_connected(self) -> None:
        delay = BACKOFF_MIN_S
        while not self._stopping:
            self._wake.clear()
            try:
                await self._driver.reconnect(self._client)
            except OSError as exc:  # refused, unreachable, TLS
                log.warning("OCPP %s: cannot reach the broker (%s)", self.station_id, exc)
            else:
                await self._wake.wait()  # lost (or stopping)
                if self._accepted:
                    delay, self._accepted = BACKOFF_MIN_S, False
            if self._stopping:
                return
            self._wake.clear()
            with contextlib.suppress(TimeoutError):  # woken early only by stop()
                await asyncio.wait_for(self._wake.wait(), delay)
            delay = min(delay * 2, BACKOFF_MAX_S)

    def publish(self, message: Message) -> None:
        topic, payload, retain = encode(message)
        info = self._client.publish(topic, payload, qos=QOS, retain=retain)
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            log.warning("OCPP %s: could not publish on %s (%s)", self.station_id, topic, info.rc)

    async def stop(self, reason: str, timeout: float = 5.0) -> None:
        """Publish the station's retained offline state, then disconnect (each step waits at
        most ``timeout``): a newer connection of the same station may follow at once."""
        self._stopping = True
        self._wake.set()
        if self._keeper is not None:
            await self._keeper  # at most paho's connect timeout, if it is connecting now
        loop = asyncio.get_running_loop()
        if self._connected.is_set():
            message = StationOffline(station_id=self.station_id, ts=_now_ms(), reason=reason)  # type: ignore[arg-type]
            topic, payload, retain = encode(message)
            done = self._published[self._client.publish(topic, payload, QOS, retain).mid] = (
                loop.create_future()
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done, timeout)
        if self._client.socket() is not None:
            self._disconnected = loop.create_future()
            self._client.disconnect()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._disconnected, timeout)
        self._driver.close(self._client)

    # the loop's thread (paho's callbacks) ------------------------------------------------

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, rc: ReasonCode, props: Any
    ) -> None:
        if rc.is_failure:
            log.warning("OCPP %s: the broker refused the station (%s)", self.station_id, rc)
            return
        client.subscribe(self._topic, qos=QOS)
        self._accepted = True
        self._connected.set()

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, rc: ReasonCode, props: Any
    ) -> None:
        if rc.is_failure and not self._stopping:
            log.warning("OCPP %s: MQTT connection lost (%s)", self.station_id, rc)
        self._connected.clear()
        self._wake.set()
        if self._disconnected is not None and not self._disconnected.done():
            self._disconnected.set_result(None)

    def _on_publish(
        self, client: mqtt.Client, userdata: Any, mid: int, rc: ReasonCode, props: Any
    ) -> None:
        done = self._published.pop(mid, None)
        if done is not None and not done.done():
            done.set_result(None)

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        try:
            if message.retain or message.topic != self._topic:
                return  # a stale or forged command (docs/protocol.md 6.3)
            request = parse(message.topic, bytes(message.payload))
        except (ProtocolError, UnicodeDecodeError) as exc:
            log.warning("OCPP %s: dropping an invalid command: %s", self.station_id, exc)
            return
        if isinstance(request, CommandRequest):
            asyncio.get_running_loop().call_soon(self._on_command, request)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(slots=True, kw_only=True)
class TransactionRecord:
    transaction_id: int
    station_id: str
    connector_id: int
    session_id: str
    meter_start: float
    stopped: bool = False


_RECORD_FIELDS: Final = tuple(f.name for f in fields(TransactionRecord))


class TransactionStore:
    """OCPP transaction ids (positive 31-bit integers, never reused by this data dir) and the
    session each one is; ``path=None``: in memory only.

    On disk a journal, one JSON line a change (a transaction made, or stopped) appended, so a
    StartTransaction or StopTransaction costs one short write however many are kept (a whole
    file rewritten each time cost 1,000 chargers' starts seconds of the event loop); it is
    rewritten compacted when it holds ``2 * MAX_TRANSACTIONS_KEPT`` lines. A torn last line
    (a crash mid-write) is skipped. The older single-document file (``*.json``) is read once
    and replaced."""

    def __init__(self, path: Path | None) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._next = 1
        self._lines = 0
        self._records: dict[int, TransactionRecord] = {}
        if path is None:
            return
        legacy = path.with_suffix(".json")
        if legacy != path and legacy.exists():
            data = json.loads(legacy.read_text())
            self._next = int(data["next"])
            for raw in data["transactions"]:
                self._keep(TransactionRecord(**raw))
            self._compact()
            legacy.unlink()
        elif path.exists():
            for line in path.read_text().splitlines():
                try:
                    raw = json.loads(line)
                    self._next = int(raw.pop("next"))
                    self._keep(TransactionRecord(**raw))
                except (ValueError, TypeError, KeyError):
                    log.warning("OCPP: skipping a damaged line of %s", path)
                self._lines += 1

    def _keep(self, record: TransactionRecord) -> None:
        self._records[record.transaction_id] = record
        while len(self._records) > MAX_TRANSACTIONS_KEPT:
            del self._records[next(iter(self._records))]

    def new(
        self, station_id: str, connector_id: int, session_id: str | None, meter_start: float
    ) -> TransactionRecord:
        """A new transaction of ``session_id``; ``None``: a start the CSMS did not ask for (a
        badge), whose session is named here. The transaction id alone could name an old
        session (ids start again with a new data dir against the same database), so a random
        part makes it new; at most 61 characters (a protocol id has 64): the station id is
        cut to 32, only there to be read."""
        with self._lock:
            transaction_id = self._next
            if session_id is None:
                station = station_id[:32]
                session_id = f"ocpp-{station}-{transaction_id}-{secrets.token_hex(6)}"
            record = TransactionRecord(
                transaction_id=transaction_id,
                station_id=station_id,
                connector_id=connector_id,
                session_id=session_id,
                meter_start=meter_start,
            )
            self._next = self._next + 1 if self._next < 2**31 - 1 else 1
            self._keep(record)
            self._append(record)
            return record

    def get(self, station_id: str, transaction_id: int) -> TransactionRecord | None:
        """The record, only if it is this station's."""
        with self._lock:
            record = self._records.get(transaction_id)
        if record is None or record.station_id != station_id:
            return None
        return record

    def mark_stopped(self, record: TransactionRecord) -> None:
        with self._lock:
            record.stopped = True
            self._append(record)

    def _line(self, record: TransactionRecord) -> str:
        fields_ = {n: getattr(record, n) for n in _RECORD_FIELDS}  # asdict deep-copies
        return json.dumps({"next": self._next, **fields_}) + "\n"

    def _append(self, record: TransactionRecord) -> None:
        if self._path is None:
            return
        if self._lines >= 2 * MAX_TRANSACTIONS_KEPT:
            self._compact()
            return
        if self._lines == 0:
            self._path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self._path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(self._line(record))
        self._lines += 1

    def _compact(self) -> None:
        assert self._path is not None
        self._path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.writelines(self._line(r) for r in self._records.values())
        os.replace(tmp, self._path)
        self._lines = len(self._records)
