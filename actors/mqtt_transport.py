"""MqttTransport: how the bridge reaches the broker, whichever process runs the paho client.

Two implementations, one :class:`~actors.mqtt_session.PahoSession` (the one paho set-up)
behind both:

- :class:`~actors.mqtt_link.MqttLink` (production, ``CsmsConfig.mqtt_process=True``): the
  session in a child process, which gathers what arrives within 1.5 ms into one batch;
- :class:`InProcessLink`: the session in this process; paho's network thread hands over
  each burst it read.

Both are built with the same keyword arguments and report through the same callbacks:

- ``on_messages(batch, latch)``: a batch of raw ``(topic, payload)`` pairs and the
  :class:`~actors.acks.AppliedLatch` to release once it is applied, which acknowledges its
  QoS 1 messages to the broker (unless their connection has ended meanwhile);
- ``on_state(up, detail, failure)``: subscribed (``up``), or the connection lost or closed;
- ``on_publish_failed(topic, error)``: a publish could not be queued;
- ``on_acked(n)``: the acknowledgements of ``n`` messages went out.

The callbacks run on the transport's thread (the link's reader, or paho's network thread),
never on the caller's: they must only parse and hand on.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Protocol

from actors.acks import AppliedLatch
from actors.mqtt_session import Batch, PahoSession
from protocol.mqtt_settings import MqttSettings

__all__ = ["Batch", "InProcessLink", "MqttTransport", "OnMessages"]

OnMessages = Callable[[Batch, AppliedLatch], None]


class MqttTransport(Protocol):
    """What the bridge needs of an MQTT connection (see the module docstring)."""

    def start(self) -> None:
        """Connect (in the background) and keep reconnecting until :meth:`stop`."""

    def publish(self, topic: str, payload: bytes, retain: bool) -> bool:
        """Queue a QoS 1 publish; ``False`` (after ``on_publish_failed``) if it could not."""

    def stop(self) -> None:
        """Disconnect and end the transport's threads (and process)."""


class InProcessLink:
    """The CSMS's paho session in this process (``CsmsConfig.mqtt_process=False``).

    No reader thread: the callbacks run on paho's network thread, one batch per socket
    read, without the link's 1.5 ms gathering.
    """

    def __init__(
        self,
        settings: MqttSettings,
        *,
        client_id: str,
        keepalive: int,
        on_messages: OnMessages,
        on_state: Callable[[bool, str, bool], None],
        on_publish_failed: Callable[[str, str], None],
        on_acked: Callable[[int], None] | None = None,
    ) -> None:
        self._on_messages = on_messages
        self._on_publish_failed = on_publish_failed
        self._on_acked = on_acked
        self.session = PahoSession(
            settings.with_client_id(client_id),
            keepalive=keepalive,
            on_batch=self._on_batch,
            on_state=on_state,
        )

    def start(self) -> None:
        self.session.start()

    def publish(self, topic: str, payload: bytes, retain: bool) -> bool:
        error = self.session.publish(topic, payload, retain)
        if error is None:
            return True
        self._on_publish_failed(topic, error)
        return False

    def stop(self) -> None:
        self.session.stop()

    def _on_batch(self, batch: Batch, generation: int, mids: list[int]) -> None:
        """Network thread: the batch goes on with a latch that acknowledges it."""
        self._on_messages(batch, AppliedLatch(functools.partial(self._ack, generation, mids)))

    def _ack(self, generation: int, mids: list[int]) -> None:
        """The batch is applied (on whichever thread released its latch last)."""
        if self.session.ack(generation, mids) and self._on_acked is not None:
            self._on_acked(len(mids))
