"""PahoSession: the CSMS's one paho set-up, shared by both MQTT transports.

:class:`~actors.mqtt_link.MqttLink` runs it in its child process (:mod:`actors.mqtt_child`),
:class:`~actors.mqtt_transport.InProcessLink` in the CSMS's own process; either way the
client is configured here and nowhere else:

- a :class:`~actors.mqtt_client.BufferedClient` (where paho supports it), MQTT 3.1.1, a
  persistent session (``clean_session=False``: the broker keeps QoS 1 messages queued while
  the CSMS is away) and ``manual_ack`` (acknowledged after apply, :mod:`actors.acks`);
- credentials and TLS from :class:`~protocol.mqtt_settings.MqttSettings`, the client id from
  its ``client_id``; keepalive; reconnects with back-off (``BACKOFF_MIN_S``..``BACKOFF_MAX_S``);
  Nagle off;
- the subscriptions (``CSMS_SUBSCRIPTIONS`` at ``QOS``) made in ``on_connect``, so a
  reconnect restores them; ``up`` is reported on the SUBACK: from then on what stations
  publish reaches the CSMS;
- inbound messages gathered per socket read (one batch per burst) with the ids of their QoS
  1 messages and the connection (``generation``) they came on.

Every callback runs on paho's network thread; :meth:`ack` and :meth:`publish` may run on any.
It imports no actor machinery: the child process stays a light import.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from actors.mqtt_client import BufferedClient, ack_many, new_client, no_delay
from protocol import CSMS_SUBSCRIPTIONS, QOS
from protocol.mqtt_settings import BACKOFF_MAX_S, BACKOFF_MIN_S, MqttSettings

__all__ = ["Batch", "OnBatch", "OnState", "PahoSession"]

Batch = list[tuple[str | None, bytes | bytearray]]
"""Raw messages as received: ``(topic, payload)``; ``topic`` is ``None`` if not UTF-8."""

OnBatch = Callable[[Batch, int, list[int]], None]
"""``on_batch(batch, generation, mids)``: a burst, its QoS 1 ids and their connection."""

OnState = Callable[[bool, str, bool], None]
"""``on_state(up, detail, failure)``: the connection came up (subscribed) or went down."""

MAX_QUEUED = 60_000
"""Outgoing messages paho may queue (publishes while the connection is down, PUBACKs)."""


class PahoSession:
    """The configured paho client of the CSMS and its batching (see the module docstring)."""

    def __init__(
        self,
        settings: MqttSettings,
        *,
        keepalive: int,
        on_batch: OnBatch,
        on_state: OnState,
        read_linger_s: float = 0.0,
    ) -> None:
        """``read_linger_s``: :attr:`BufferedClient.read_linger_s
        <actors.mqtt_client.BufferedClient.read_linger_s>` (what arrives within it goes on
        in one batch)."""
        self.settings = settings
        self._keepalive = keepalive
        self._on_batch = on_batch
        self._on_state = on_state
        self._pending: Batch = []
        self._pending_mids: list[int] = []
        # The connection a message id belongs to: bumped (under the lock) when one ends, so
        # an ack checked against it is either queued before paho's reconnect() clears the
        # output queue, or dropped (the broker redelivers those messages to the next one).
        self._generation = 0
        self._generation_lock = threading.Lock()
        self._session_present: Any = None
        self.client = new_client(
            CallbackAPIVersion.VERSION2,
            client_id=settings.client_id or "",
            clean_session=False,
            protocol=mqtt.MQTTv311,
            manual_ack=True,
        )
        settings.apply_to(self.client)
        self._batched = isinstance(self.client, BufferedClient)
        if isinstance(self.client, BufferedClient):
            self.client.on_read_done = self.flush
            self.client.on_publish_received = self._on_publish_received
            self.client.read_linger_s = read_linger_s
        self.client.max_queued_messages_set(MAX_QUEUED)
        self.client.reconnect_delay_set(min_delay=BACKOFF_MIN_S, max_delay=BACKOFF_MAX_S)  # type: ignore[arg-type]
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_socket_open = no_delay

    def start(self) -> None:
        """Connect in the background (paho's network thread), reconnecting as needed."""
        self.client.connect_async(self.settings.host, self.settings.port, keepalive=self._keepalive)
        self.client.loop_start()

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def publish(self, topic: str, payload: bytes, retain: bool) -> str | None:
        """Queue a QoS 1 publish (sent once connected); the error if paho refused it."""
        info = self.client.publish(topic, payload, qos=QOS, retain=retain)
        if info.rc in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            return None
        return mqtt.error_string(info.rc)

    def ack(self, generation: int, mids: Sequence[int]) -> bool:
        """Acknowledge ``mids`` unless their connection (``generation``) has ended."""
        with self._generation_lock:
            if generation != self._generation or not mids:
                return False
            ack_many(self.client, mids)
        return True

    def flush(self) -> None:
        """After a socket read (network thread): what it delivered goes on as one batch."""
        if not self._pending:
            return
        batch, mids = self._pending, self._pending_mids
        self._pending, self._pending_mids = [], []
        self._on_batch(batch, self._generation, mids)

    # ------------------------------------------------------------------ paho's thread

    def _on_connect(self, client: mqtt.Client, u: Any, flags: Any, reason: Any, p: Any) -> None:
        if reason.is_failure:
            self._on_state(False, f"connect refused: {reason}", True)
            return
        self._session_present = getattr(flags, "session_present", None)
        client.subscribe([(topic, QOS) for topic in CSMS_SUBSCRIPTIONS])

    def _on_subscribe(self, client: mqtt.Client, u: Any, mid: Any, reasons: Any, p: Any) -> None:
        self._on_state(True, f"session present: {self._session_present}", False)

    def _on_disconnect(self, client: mqtt.Client, u: Any, flags: Any, reason: Any, p: Any) -> None:
        self.flush()  # what this connection delivered goes out with its generation
        with self._generation_lock:
            self._generation += 1
        failure = bool(reason.is_failure)
        self._on_state(False, f"{'lost' if failure else 'closed'}: {reason}", failure)

    def _on_publish_received(
        self, topic: str | None, payload: bytes | bytearray, qos: int, mid: int
    ) -> None:
        """A message joins the pending batch: :class:`BufferedClient`'s own PUBLISH path (the
        common case) and, through :meth:`_on_message`, paho's."""
        self._pending.append((topic, payload))
        if qos == 1:
            self._pending_mids.append(mid)

    def _on_message(self, client: mqtt.Client, u: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            topic: str | None = msg.topic
        except UnicodeDecodeError:
            topic = None
        self._on_publish_received(topic, msg.payload, msg.qos, msg.mid)
        if not self._batched:
            self.flush()
