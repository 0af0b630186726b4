"""MqttBridgeActor: the one owner of the CSMS's MQTT connection.

By default the paho client runs in a process of its own (:class:`~actors.mqtt_link.MqttLink`,
``process=True``): it hands over the raw messages in batches, and a reader thread here
parses them. With ``process=False`` the client runs in this process (paho's network
thread runs the callbacks). Either way the messages are parsed and queued for the
supervisor in a :class:`~actors.inbox.BatchInbox` (one ``tell`` per burst, not per
message); a bad topic or payload is logged and dropped, never raised into the network
loop; the actor's own thread runs :class:`Publish` messages. Subscriptions are made on
every connect so a reconnect restores them, and the session is persistent
(``clean_session=False``) so QoS 1 messages queued by the broker while the CSMS was
away are delivered when it comes back.

Either way QoS 1 messages are acknowledged after they are applied (paho ``manual_ack``):
each raw batch gets an :class:`~actors.acks.AppliedLatch` that travels with its parsed
messages through the inbox to the supervisor, the EVSE hosts and, for session starts and
ends, the session recorder's write (:mod:`actors.acks`). A malformed message is
acknowledged with its batch: it will never apply, and redelivering it would not help.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
import pykka
from paho.mqtt.enums import CallbackAPIVersion

from actors.acks import AppliedLatch
from actors.inbox import BatchInbox
from actors.messages import Publish, VersionRefused
from actors.mqtt_client import BufferedClient, ack_many, new_client, no_delay
from actors.mqtt_link import MqttLink
from actors.routing import EvseRegistry, IngestRouter
from protocol import (
    CSMS_SUBSCRIPTIONS,
    MAX_FUTURE_SKEW_MS,
    QOS,
    MeterValues,
    ProtocolError,
    StationBirth,
    StatusReport,
    UnsupportedVersion,
    parse,
)
from protocol.mqtt_settings import BACKOFF_MAX_S, BACKOFF_MIN_S, MqttSettings, parse_mqtt_url

__all__ = [
    "BridgeStats",
    "Connect",
    "MqttBridgeActor",
    "no_delay",
    "parse_mqtt_url",
]  # no_delay: compat

log = logging.getLogger(__name__)

SUBSCRIPTIONS = CSMS_SUBSCRIPTIONS


@dataclass(frozen=True, slots=True, kw_only=True)
class Connect:
    """Start the paho loop, delivering parsed messages to ``target`` (in batches, through
    :class:`~actors.messages.InboundReady`), or, with a ``registry``, each EVSE's messages
    straight to its actor and only the rest to ``target`` (:mod:`actors.routing`)."""

    target: pykka.ActorRef[Any]
    registry: EvseRegistry | None = None


@dataclass
class BridgeStats:
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
        self._keepalive = keepalive
        self._inbox: BatchInbox | None = None
        self._router: IngestRouter | None = None
        self.stats = stats if stats is not None else BridgeStats()
        self.connected = connected if connected is not None else threading.Event()
        self._client_id = client_id
        self._link: MqttLink | None = None
        if process:
            self._link = MqttLink(
                settings,
                client_id=client_id,
                keepalive=keepalive,
                on_messages=self._on_batch,
                on_state=self._on_link_state,
                on_publish_failed=self._on_publish_failed,
                on_acked=self._on_acked,
            )
        self._client = new_client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=False,
            protocol=mqtt.MQTTv311,
            manual_ack=True,
        )
        settings.apply_to(self._client)
        # In-process client (paho's network thread): a batch per socket read, its ids, and
        # the connection they belong to (see actors.mqtt_link for why).
        self._pending: list[tuple[str | None, bytes | bytearray]] = []
        self._pending_mids: list[int] = []
        self._generation = 0
        self._generation_lock = threading.Lock()
        if isinstance(self._client, BufferedClient):
            self._client.on_read_done = self._flush_pending
        self._client.max_queued_messages_set(60_000)
        self._client.reconnect_delay_set(min_delay=BACKOFF_MIN_S, max_delay=BACKOFF_MAX_S)  # type: ignore[arg-type]
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_socket_open = no_delay
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message

    def on_receive(self, message: Any) -> Any:
        """Runs on the bridge actor's thread."""
        match message:
            case Publish(topic=topic, payload=payload, retain=retain):
                self._publish(topic, payload, retain)
            case Connect(target=target, registry=registry):
                self._inbox = BatchInbox(target)
                if registry is not None:
                    self._router = IngestRouter(registry, self._inbox)
                if self._link is not None:
                    self._link.start()
                else:
                    self._client.connect_async(self._host, self._port, keepalive=self._keepalive)
                    self._client.loop_start()
            case _:
                log.warning("MqttBridgeActor: unexpected message %r", message)
        return None

    def on_stop(self) -> None:
        if self._link is not None:
            self._link.stop()
            self.connected.clear()
        else:
            self._client.disconnect()
            self._client.loop_stop()

    def _publish(self, topic: str, payload: bytes, retain: bool) -> None:
        if self._link is not None:
            if self._link.publish(topic, payload, retain):
                self.stats.messages_out += 1
            else:
                self.stats.publish_failures += 1
                log.error("publish to %s failed: the MQTT process is not running", topic)
            return
        info = self._client.publish(topic, payload, qos=QOS, retain=retain)
        if info.rc != mqtt.MQTT_ERR_SUCCESS and info.rc != mqtt.MQTT_ERR_NO_CONN:
            self.stats.publish_failures += 1
            log.error("publish to %s failed: %s", topic, mqtt.error_string(info.rc))
            return
        self.stats.messages_out += 1

    # ------------------------------------------------------------------ paho thread

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any
    ) -> None:
        if reason_code.is_failure:
            log.error("MQTT connect to %s:%s refused: %s", self._host, self._port, reason_code)
            return
        self.stats.connects += 1
        log.info(
            "CSMS connected to MQTT %s:%s (session present: %s)",
            self._host,
            self._port,
            getattr(flags, "session_present", None),
        )
        client.subscribe([(topic, QOS) for topic in SUBSCRIPTIONS])

    def _on_subscribe(
        self, client: mqtt.Client, userdata: Any, mid: Any, reason_codes: Any, properties: Any
    ) -> None:
        self.connected.set()  # subscribed: what stations publish from now on reaches us

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any
    ) -> None:
        self._flush_pending()
        with self._generation_lock:
            self._generation += 1
        self.connected.clear()
        if not reason_code.is_failure:
            log.info("CSMS disconnected from MQTT")
            return
        log.warning(
            "CSMS lost its MQTT connection (%s); paho reconnects with back-off", reason_code
        )

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            topic: str | None = msg.topic
        except UnicodeDecodeError:
            topic = None
        self._pending.append((topic, msg.payload))
        if msg.qos == 1:
            self._pending_mids.append(msg.mid)
        if not isinstance(client, BufferedClient):
            self._flush_pending()

    def _flush_pending(self) -> None:
        """After a socket read (paho's thread): the batch goes on like the link's batches."""
        if not self._pending:
            return
        batch, mids = self._pending, self._pending_mids
        self._pending, self._pending_mids = [], []
        generation = self._generation
        self._on_batch(batch, AppliedLatch(lambda: self._ack_in_process(generation, mids)))

    def _ack_in_process(self, generation: int, mids: list[int]) -> None:
        """The batch is applied (any thread): acknowledge it unless its connection ended."""
        with self._generation_lock:
            if generation != self._generation or not mids:
                return
            ack_many(self._client, mids)
        self._on_acked(len(mids))

    # ------------------------------------------------------------------ link reader thread

    def _on_batch(
        self, batch: Sequence[tuple[str | None, bytes | bytearray]], latch: AppliedLatch
    ) -> None:
        """Parse a batch, then queue it for the supervisor with one notice; ``latch`` goes
        with it (left unreleased if the supervisor is gone: the broker keeps the batch)."""
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
        self.stats.acked += n

    def _on_link_state(self, up: bool, detail: str, failure: bool) -> None:
        if up:
            self.stats.connects += 1
            log.info("CSMS connected to MQTT %s:%s (%s)", self._host, self._port, detail)
            self.connected.set()
            return
        self.connected.clear()
        if failure:
            log.warning("CSMS lost its MQTT connection (%s); reconnecting with back-off", detail)
        else:
            log.info("CSMS disconnected from MQTT (%s)", detail)

    def _on_publish_failed(self, topic: str, error: str) -> None:
        self.stats.publish_failures += 1
        log.error("publish to %s failed: %s", topic, error)

    # ------------------------------------------------------------------ either thread

    def _parse(self, topic: str | None, payload: bytes | bytearray) -> Any:
        """The parsed message, or ``None`` (counted and logged) if it is malformed."""
        self.stats.messages_in += 1
        try:
            if topic is None:
                raise ProtocolError("topic is not UTF-8")
            message = parse(topic, payload)
            if isinstance(message, StatusReport | MeterValues | StationBirth):
                ahead = message.ts - _wall_ms()
                if ahead > MAX_FUTURE_SKEW_MS:
                    self.stats.future_stamped += 1
                    log.warning(
                        "refusing a report stamped %.0f s in the future on %r",
                        ahead / 1000,
                        topic[:200],
                    )
                    return None
            return message
        except UnsupportedVersion as exc:
            self.stats.wrong_version += 1
            return VersionRefused(station_id=exc.station_id, version=exc.version, why=str(exc))
        except ProtocolError as exc:
            self.stats.malformed += 1
            n = self.stats.malformed
            if n <= 10 or n % 1000 == 0:
                log.warning("dropping malformed message #%d on %r: %s", n, (topic or "")[:200], exc)
        except Exception:  # never kill the loop
            self.stats.malformed += 1
            log.exception("dropping undecodable message")
        return None


def _wall_ms() -> int:
    return int(time.time() * 1000)
