"""MqttBridgeActor: the one owner of the CSMS's MQTT connection.

The connection is an :class:`~actors.mqtt_transport.MqttTransport`: by default the paho
client runs in a process of its own (:class:`~actors.mqtt_link.MqttLink`, ``process=True``)
and a reader thread here gets its raw messages in batches; with ``process=False``
(:class:`~actors.mqtt_transport.InProcessLink`) it runs in this process and paho's network
thread hands them over. Both run the same paho set-up (:mod:`actors.mqtt_session`: the
subscriptions made on every connect so a reconnect restores them, a persistent session,
``clean_session=False``, so QoS 1 messages queued by the broker while the CSMS was away
are delivered when it comes back), and the bridge has one code path for both: on the
transport's thread the messages are parsed and routed by the
:class:`~actors.routing.IngestRouter`: each EVSE's messages of the burst straight to its actor,
only births, offline notices and unknown EVSEs to the supervisor, through a
:class:`~actors.inbox.BatchInbox` (one ``tell`` per burst, not per message); a bad topic or
payload is logged and dropped, never raised into the network loop; the actor's own thread runs
:class:`Publish` messages.

QoS 1 messages are acknowledged after they are applied (paho ``manual_ack``): each raw batch
gets an :class:`~actors.acks.AppliedLatch` that travels with its parsed messages to the EVSE
actors (and the supervisor, for what it routes) and, for session starts and ends, the session
recorder's write (:mod:`actors.acks`). A malformed message is acknowledged with its batch: it
will never apply, and redelivering it would not help.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import pykka

from actors.acks import AppliedLatch
from actors.inbox import BatchInbox
from actors.messages import Publish, VersionRefused
from actors.mqtt_link import MqttLink
from actors.mqtt_transport import Batch, InProcessLink, MqttTransport
from actors.routing import EvseRegistry, IngestRouter
from protocol import (
    CSMS_SUBSCRIPTIONS,
    MAX_FUTURE_SKEW_MS,
    MeterValues,
    ProtocolError,
    StationBirth,
    StatusReport,
    UnsupportedVersion,
    parse,
)
from protocol.mqtt_settings import MqttSettings, parse_mqtt_url

__all__ = ["SUBSCRIPTIONS", "BridgeStats", "Connect", "MqttBridgeActor", "parse_mqtt_url"]

log = logging.getLogger(__name__)

SUBSCRIPTIONS = CSMS_SUBSCRIPTIONS


@dataclass(frozen=True, slots=True, kw_only=True)
class Connect:
    """Start the MQTT transport, delivering parsed messages to ``target`` (in batches, through
    :class:`~actors.messages.InboundReady`), or, with a ``registry``, each EVSE's messages
    straight to its actor and only the rest to ``target`` (:mod:`actors.routing`)."""

    target: pykka.ActorRef[Any]
    registry: EvseRegistry | None = None


@dataclass
class BridgeStats:
    """The bridge's counters. Several threads count (the link's reader, the bridge actor, and
    whichever thread applies a batch last: its acknowledgement), so every write goes through
    :meth:`count`, under a lock; readers (the metrics scrape) read the fields."""

    messages_in: int = 0
    messages_out: int = 0
    malformed: int = 0
    publish_failures: int = 0
    connects: int = 0
    future_stamped: int = 0
    """Reports stamped further ahead of the CSMS's clock than ``MAX_FUTURE_SKEW_MS``."""
    wrong_version: int = 0
    acked: int = 0
    """QoS 1 messages acknowledged to the broker (after they were applied)."""
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def count(self, name: str, n: int = 1) -> int:
        """Add ``n`` to the counter ``name``; its new value."""
        with self._lock:
            value: int = getattr(self, name) + n
            setattr(self, name, value)
        return value


class MqttBridgeActor(pykka.ThreadingActor):
    """Owns the MQTT connection of the CSMS."""

    def __init__(
        self,
        url: str | MqttSettings,
        *,
        client_id: str = "smartcharge-csms",
        keepalive: int = 10,
        stats: BridgeStats | None = None,
        connected: threading.Event | None = None,
        process: bool = True,
    ) -> None:
        """``url``: ``mqtt://host:port`` or full :class:`MqttSettings` (credentials, TLS);
        ``process``: run the MQTT client in a child process (see the module docstring)."""
        super().__init__()
        settings = url if isinstance(url, MqttSettings) else parse_mqtt_url(url)
        if settings.username is not None:
            # A broker with identities ties the client id to the user name
            # (docs/broker-security.md): the CSMS's session is its account's.
            client_id = settings.username
        self._host, self._port = settings.host, settings.port
        self._inbox: BatchInbox | None = None
        self._router: IngestRouter | None = None
        self.stats = stats if stats is not None else BridgeStats()
        self.connected = connected if connected is not None else threading.Event()
        link = MqttLink if process else InProcessLink
        self._transport: MqttTransport = link(
            settings,
            client_id=client_id,
            keepalive=keepalive,
            on_messages=self._on_batch,
            on_state=self._on_link_state,
            on_publish_failed=self._on_publish_failed,
            on_acked=self._on_acked,
        )

    def on_receive(self, message: Any) -> Any:
        """Runs on the bridge actor's thread."""
        match message:
            case Publish(topic=topic, payload=payload, retain=retain):
                self._publish(topic, payload, retain)
            case Connect(target=target, registry=registry):
                self._inbox = BatchInbox(target)
                if registry is not None:
                    self._router = IngestRouter(registry, self._inbox)
                self._transport.start()
            case _:
                log.warning("MqttBridgeActor: unexpected message %r", message)
        return None

    def on_stop(self) -> None:
        self._transport.stop()
        self.connected.clear()

    def _publish(self, topic: str, payload: bytes, retain: bool) -> None:
        if self._transport.publish(topic, payload, retain):  # else on_publish_failed counted it
            self.stats.count("messages_out")

    # ------------------------------------------------------------------ transport thread

    def _on_batch(self, batch: Batch, latch: AppliedLatch) -> None:
        """Parse a batch, then queue it for the supervisor with one notice; ``latch`` goes
        with it (left unreleased if the supervisor is gone: the broker keeps the batch)."""
        self.stats.count("messages_in", len(batch))
        parsed = [m for m in (self._parse(topic, payload) for topic, payload in batch) if m]
        if self._inbox is None:
            return
        if not parsed:  # only malformed messages: they will never apply
            latch.release()
            return
        if self._router is not None:
            self._router.route(parsed, latch)
            return
        try:
            self._inbox.put_many(parsed, latch)
        except pykka.ActorDeadError:
            log.error("supervisor is gone; dropping %d messages", len(parsed))

    def _on_acked(self, n: int) -> None:
        self.stats.count("acked", n)

    def _on_link_state(self, up: bool, detail: str, failure: bool) -> None:
        if up:
            self.stats.count("connects")
            log.info("CSMS connected to MQTT %s:%s (%s)", self._host, self._port, detail)
            self.connected.set()
            return
        self.connected.clear()
        if failure:
            log.warning("CSMS lost its MQTT connection (%s); reconnecting with back-off", detail)
        else:
            log.info("CSMS disconnected from MQTT (%s)", detail)

    def _on_publish_failed(self, topic: str, error: str) -> None:
        self.stats.count("publish_failures")
        log.error("publish to %s failed: %s", topic, error)

    # ------------------------------------------------------------------ either thread

    def _parse(self, topic: str | None, payload: bytes | bytearray) -> Any:
        """The parsed message, or ``None`` (counted and logged) if it is malformed; the
        caller counts ``messages_in`` (once per batch: a lock per message was measurable)."""
        try:
            if topic is None:
                raise ProtocolError("topic is not UTF-8")
            message = parse(topic, payload)
            if isinstance(message, StatusReport | MeterValues | StationBirth):
                ahead = message.ts - _wall_ms()
                if ahead > MAX_FUTURE_SKEW_MS:
                    self.stats.count("future_stamped")
                    log.warning(
                        "refusing a report stamped %.0f s in the future on %r",
                        ahead / 1000,
                        topic[:200],
                    )
                    return None
            return message
        except UnsupportedVersion as exc:
            self.stats.count("wrong_version")
            return VersionRefused(station_id=exc.station_id, version=exc.version, why=str(exc))
        except ProtocolError as exc:
            n = self.stats.count("malformed")
            if n <= 10 or n % 1000 == 0:
                log.warning("dropping malformed message #%d on %r: %s", n, (topic or "")[:200], exc)
        except Exception:  # never kill the loop
            self.stats.count("malformed")
            log.exception("dropping undecodable message")
        return None


def _wall_ms() -> int:
    return int(time.time() * 1000)
