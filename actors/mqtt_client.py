"""A paho client that reads the socket in large chunks: fewer system calls per message.

Stock paho 2.x, running its own network thread (``loop_start``), spends about six system
calls on every QoS 1 message it receives: a ``select``, a ``recv`` of one byte for the
packet type, one per byte of the remaining length, one for the body, and for the PUBACK a
byte written to its wake-up socket pair (to interrupt a ``select`` the same thread is not
in) plus the ``send``. Each call releases and re-takes the GIL; with other busy threads in
the process (the CSMS's actors) every re-take is a thread switch, and the network thread
ends up costing about twice the CPU per message of a bare subscriber
(``docs/performance.md``).

:class:`BufferedClient` changes these things, all inside paho's own read path:

- :meth:`_sock_recv` serves reads from a buffer filled by one ``recv`` of up to 64 KiB, and
  :meth:`loop_read` keeps parsing packets until that buffer is empty, so a burst of
  messages costs one ``select`` and one ``recv``;
- while :meth:`loop_read` runs on the network thread, the wake-up byte is not written: the
  PUBACKs queued by the callbacks are sent by the loop's next turn anyway (paho checks for
  queued output before every ``select``). A ``publish`` from another thread in that window
  is sent on the same next turn.

- with :attr:`~BufferedClient.on_publish_received` set, the QoS 0/1 PUBLISH packets that lie
  whole in that buffer are framed and handed on in one loop (:meth:`_packet_read`) instead
  of paho's per-packet path (a ``recv`` call per field, an ``MQTTMessage``, two locks): the
  MQTT process's CPU per station message fell by about a third (``docs/performance.md``);
  anything else, a malformed packet included, is still paho's;
- with :attr:`~BufferedClient.read_linger_s` set, a read that starts a new burst after a
  small one first sleeps that long, so what arrives meanwhile comes in the same ``recv``
  (and goes on as one batch): at a steady rate of small bursts the network thread wakes
  once per window instead of once per message. After a large read (a backlog, more than
  :data:`_SMALL_READ` bytes) it reads at once.

Everything else (the protocol, QoS, reconnects, TLS) is paho's. The overridden methods are
private to paho, so the version is pinned (``setup.cfg``); the integration tests exercise
this client end to end, and :data:`SUPPORTED` says whether it is in use.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import paho.mqtt.client as mqtt

__all__ = ["SUPPORTED", "BufferedClient", "ack_many", "new_client", "no_delay"]

_READ_SIZE = 65_536
_SMALL_READ = _READ_SIZE // 4

SUPPORTED = all(
    hasattr(mqtt.Client, name)
    for name in (
        "_sock_recv",
        "_sock_close",
        "_packet_read",
        "loop_read",
        "_reset_sockets",
        "_packet_queue",
    )
)
"""Whether this paho has the read path :class:`BufferedClient` relies on."""


class _NoWakeUp:
    """Stands in for paho's wake-up socket while the network thread itself is reading."""

    @staticmethod
    def send(data: bytes) -> int:
        return len(data)


_NO_WAKE_UP = _NoWakeUp()


class BufferedClient(mqtt.Client):
    """``paho.mqtt.client.Client`` with a buffered read path (see the module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._rbuf = b""
        self._rpos = 0
        self._wake_up: Any = None  # the real wake-up socket while it is stood in for
        self._last_read = 0
        self.read_linger_s = 0.0
        """Sleep this long before a read that follows a small one (see the module docstring);
        0: read at once."""
        self.on_read_done: Callable[[], None] | None = None
        """Called on the network thread after each burst of reads (its ``on_message`` calls):
        where a caller that batches messages sends its batch."""
        self.on_publish_received: Callable[[str | None, bytes, int, int], None] | None = None
        """``(topic, payload, qos, mid)`` for each QoS 0/1 PUBLISH read whole from the buffer
        (``topic`` ``None`` if it is not UTF-8), instead of paho's ``on_message``; see
        :meth:`_packet_read`. Only with ``manual_ack`` (the caller acknowledges), and
        without what paho's path adds around ``on_message``: ``message_callback_add``
        filters, the debug log line, the callback lock, ``suppress_exceptions`` (an
        exception goes out of ``loop_read``; the message is not handed on again)."""

    def _sock_close(self) -> None:
        super()._sock_close()  # every way a connection ends: no old bytes for the next one
        self._rbuf, self._rpos = b"", 0

    def _reset_sockets(self, sockpair_only: bool = False) -> None:
        if self._sockpairW is _NO_WAKE_UP:  # closed inside loop_read: close the real one
            self._sockpairW = self._wake_up
        super()._reset_sockets(sockpair_only)  # it closes the socket via _sock_close

    def _sock_recv(self, bufsize: int) -> bytes:
        buf, pos = self._rbuf, self._rpos
        if pos >= len(buf):
            data = self._recv_burst()
            if len(data) <= bufsize:  # also the b"" of a closed connection
                return data
            buf, pos = self._rbuf, self._rpos = data, 0
        end = min(pos + bufsize, len(buf))
        self._rpos = end
        return buf[pos:end]

    def _recv_burst(self) -> bytes:
        """One ``recv`` of up to :data:`_READ_SIZE` (after the linger, if one is due)."""
        if self.read_linger_s > 0 and self._last_read < _SMALL_READ:
            time.sleep(self.read_linger_s)
        data: bytes = super()._sock_recv(_READ_SIZE)
        self._last_read = len(data)
        return data

    def _packet_read(self) -> mqtt.MQTTErrorCode:
        """The PUBLISH packets (QoS 0 or 1, MQTT 3.1.1) lying whole in the read buffer, parsed
        in one loop and handed to :attr:`on_publish_received`; anything else (another packet
        type, QoS 2, a packet cut by the buffer's end, one paho is part-way through, a
        malformed one) goes through paho's own ``_packet_read``, which reports it as before.
        Per message this skips paho's byte-by-byte framing, its ``MQTTMessage`` and its
        callback locks: about half of its CPU (``docs/performance.md``)."""
        deliver = self.on_publish_received
        packet = self._in_packet
        if (
            deliver is None
            or not self._manual_ack  # paho would send the PUBACK itself
            or packet["command"]
            or packet["have_remaining"]
            or packet["remaining_count"]
            or self._protocol == mqtt.MQTTv5
        ):
            return super()._packet_read()
        buf, pos = self._rbuf, self._rpos
        if pos >= len(buf):  # read the next burst here: paho would take its first byte alone
            try:
                buf = self._recv_burst()
            except BlockingIOError:
                return mqtt.MQTTErrorCode.MQTT_ERR_AGAIN
            except OSError as err:  # as paho's own read reports it
                self._easy_log(mqtt.MQTT_LOG_ERR, "failed to receive on socket: %s", err)
                return mqtt.MQTTErrorCode.MQTT_ERR_CONN_LOST
            if not buf:
                return mqtt.MQTTErrorCode.MQTT_ERR_CONN_LOST
            self._rbuf, self._rpos = buf, 0
            pos = 0
        end = len(buf)
        start = pos
        while pos < end:
            header = buf[pos]
            qos = (header & 0x06) >> 1
            if header & 0xF0 != mqtt.PUBLISH or qos > 1:
                break
            length, shift, i = 0, 0, pos + 1
            while i < end and shift < 28:
                byte = buf[i]
                length |= (byte & 0x7F) << shift
                shift += 7
                i += 1
                if not byte & 0x80:
                    break
            else:
                break  # cut off, or more than four length bytes: paho decides
            body = i + 2  # after the topic length
            topic_end = body + (buf[i] << 8 | buf[i + 1]) if i + 1 < end else end + 1
            payload_at = topic_end + 2 * qos
            packet_end = i + length
            if packet_end > end or topic_end == body or payload_at > packet_end:
                break  # cut off by the buffer's end, or an empty or overlong topic
            try:
                topic: str | None = buf[body:topic_end].decode("utf-8")
            except UnicodeDecodeError:
                topic = None
            mid = buf[topic_end] << 8 | buf[topic_end + 1] if qos else 0
            if pos == start:  # traffic, for the keepalive (once per read)
                with self._msgtime_mutex:
                    self._last_bytes_received = mqtt.time_func()
            self._rpos = pos = packet_end  # consumed before it is handed on: never twice
            deliver(topic, buf[payload_at:packet_end], qos, mid)
        if pos == start:
            return super()._packet_read()
        return mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS

    def loop_read(self, max_packets: int = 1) -> mqtt.MQTTErrorCode:
        thread = self._thread
        on_network_thread = thread is not None and thread.ident == threading.get_ident()
        wake_up = self._wake_up = self._sockpairW
        if on_network_thread and wake_up is not None:
            self._sockpairW = _NO_WAKE_UP  # type: ignore[assignment]
        try:
            rc = super().loop_read(max_packets)
            while (
                rc == mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS
                and self._rpos < len(self._rbuf)
                and self._sock is not None
            ):
                rc = super().loop_read(max_packets)
            if self.on_read_done is not None:
                self.on_read_done()
            return rc
        finally:
            if self._sockpairW is _NO_WAKE_UP:
                self._sockpairW = wake_up


def ack_many(client: mqtt.Client, mids: Sequence[int]) -> None:
    """Acknowledge the QoS 1 messages ``mids`` (``manual_ack``), from any thread.

    paho's ``ack(mid, 1)`` queues one PUBACK and, called from another thread than the
    network loop's, writes a wake-up byte for it: one system call per message. Here, on a
    :class:`BufferedClient`, the PUBACKs of a batch go out as one queued write with one
    wake-up (a PUBACK is four bytes, ``0x40 0x02 mid``: MQTT 3.1.1, section 3.4). A PUBACK
    queued while the connection is down is dropped by paho's ``reconnect()``.
    """
    if not mids:
        return
    if isinstance(client, BufferedClient):
        packet = b"".join(_PUBACK.pack(mqtt.PUBACK, 2, mid) for mid in mids)
        client._packet_queue(mqtt.PUBACK, packet, 0, 1)
        return
    for mid in mids:
        client.ack(mid, 1)


_PUBACK = struct.Struct("!BBH")


def no_delay(client: mqtt.Client, userdata: Any, sock: Any) -> None:
    """paho ``on_socket_open``: turn Nagle's algorithm off (it delays small QoS 1 packets)."""
    with contextlib.suppress(OSError, AttributeError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def new_client(*args: Any, **kwargs: Any) -> mqtt.Client:
    """A :class:`BufferedClient` where this paho supports it, else paho's own client."""
    cls = BufferedClient if SUPPORTED else mqtt.Client
    return cls(*args, **kwargs)
