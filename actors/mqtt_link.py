"""The CSMS's MQTT connection in a process of its own: paho off the actors' GIL.

Under the GIL the MQTT client's own work (framing, PUBACKs, its socket calls) competes
with every actor for one core; measured here it was over half of the CSMS's CPU per
station message (``docs/performance.md``). :class:`MqttLink`, the production
:class:`~actors.mqtt_transport.MqttTransport`, runs the CSMS's
:class:`~actors.mqtt_session.PahoSession` in a child process (``python -m
actors.mqtt_child``, a light import) and talks to it over a socket pair with
:class:`multiprocessing.connection.Connection` framing:

- child -> parent: ``("msgs", [(topic, payload), ...], (generation, [mid, ...]))`` one
  batch per burst the client read, with the ids of its QoS 1 messages and the connection
  they came on; ``("up", detail)`` and ``("down", detail, failure)`` as the connection
  comes and goes; ``("pubfail", topic, error)`` when a publish could not be queued;
- parent -> child: ``("pub", topic, payload, retain)``, ``("ack", [(generation, [mid,
  ...]), ...])`` once a batch is applied, and ``("stop",)``.

The child owns the persistent session (``clean_session=False``) and acknowledges a QoS 1
message only when the parent says it was applied (paho ``manual_ack``; see
:mod:`actors.acks`): ``on_messages(batch, latch)`` gets an
:class:`~actors.acks.AppliedLatch` whose release queues the batch's ids here; the reader
thread sends what is queued at most every :data:`ACK_EVERY_S` (one ``ack`` message for
all the batches applied meanwhile: at a steady 2,000 msg/s a batch is one or two messages,
and an ``ack`` per batch woke the child and paho's network thread once per message).
Message ids are per connection: the child counts its connections
(``generation``, bumped when one ends) and drops acks for an older one; the broker
redelivers those messages to the new connection, and the CSMS ignores what it already
applied (``seq``). Unacknowledged messages are bounded by the broker's
``max_inflight_messages`` (``docs/performance.md``). Backpressure is the socket: a parent
that falls behind blocks the child's sends, and the child then stops reading from the broker.

If the child dies, the parent's reader sees the socket close, reports the connection down,
and starts a new child after a second (the broker kept the session's queued messages).
If the parent dies, the child's ``recv`` fails and it disconnects and exits.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import select
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from actors.acks import AppliedLatch
from actors.mqtt_session import Batch
from protocol.mqtt_settings import MqttSettings

__all__ = ["MqttLink"]

log = logging.getLogger(__name__)

_RESTART_DELAY_S = 1.0
_MAX_BATCH = 5_000
_MAX_RESTART_DELAY_S = 30.0

ACK_EVERY_S = 0.01
"""How often the reader sends the acknowledgements of the batches applied meanwhile. After
a second of finding none to send (a batch that never applies: its EVSE actor died) it
looks once a second, until one comes. The broker keeps an unacknowledged message a little
longer: its ``max_inflight_messages`` (10,000 recommended, ``docs/performance.md``) is
the bound."""
_ACK_IDLE_S = 1.0

CHILD_MODULE = "actors.mqtt_child"
"""What the child process runs (``python -m``); also how tests and benches find it."""

Acks = list[tuple[int, list[int]]]
"""``[(generation, [mid, ...]), ...]``: QoS 1 message ids by the child's connection."""


class MqttLink:
    """Parent side: starts the MQTT child process and reads its batches on a thread.

    ``on_messages(batch, latch)`` gets each batch of ``(topic, payload)`` pairs (``topic``
    is ``None`` for one paho could not decode) and an :class:`AppliedLatch` to release
    once the batch is applied (then its QoS 1 messages are acknowledged to the broker);
    ``on_state(up, detail, failure)`` each connection change, both on the reader thread;
    ``on_publish_failed(topic, error)`` likewise. ``acked`` counts the messages whose
    acknowledgement went to the child.
    """

    def __init__(
        self,
        host: str | MqttSettings,
        port: int | None = None,
        *,
        client_id: str,
        keepalive: int,
        on_messages: Callable[[Batch, AppliedLatch], None],
        on_state: Callable[[bool, str, bool], None],
        on_publish_failed: Callable[[str, str], None],
        on_acked: Callable[[int], None] | None = None,
        linger_s: float = 0.0015,
        ack_every_s: float = ACK_EVERY_S,
    ) -> None:
        """``linger_s``: after a quiet spell, how long the child waits before it reads, so
        that what arrives meanwhile comes over as one batch (fewer wake-ups per message
        here and in the child: :attr:`actors.mqtt_client.BufferedClient.read_linger_s`);
        the reader hands over what is queued together, without waiting for more;
        ``ack_every_s``: see :data:`ACK_EVERY_S`."""
        self._ack_every_s = ack_every_s
        self._acks_missed = 0  # looks in a row that found nothing to send
        self._acks_lock = threading.Lock()
        self._acks_due: list[tuple[Connection, Acks]] = []  # applied, not sent yet
        self._unsent = 0  # batches handed over whose acknowledgement is not sent yet
        self._next_ack_at = 0.0
        settings = (
            host if isinstance(host, MqttSettings) else MqttSettings(host=host, port=port or 1883)
        )
        # Handed to the child on its stdin, never on its command line (``ps`` shows that).
        self._config = {
            "settings": settings.with_client_id(client_id).to_json(),
            "client_id": client_id,
            "keepalive": keepalive,
            "linger_s": linger_s,
        }
        self._on_messages = on_messages
        self._on_state = on_state
        self._on_publish_failed = on_publish_failed
        self._on_acked = on_acked
        self._stopping = threading.Event()
        self._send_lock = threading.Lock()
        self._spawn_lock = threading.Lock()  # stop() never misses a child being started
        self._conn: Connection | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None
        self.restarts = 0
        self.acked = 0

    # ------------------------------------------------------------------ parent API

    def start(self) -> None:
        self._spawn()
        self._reader = threading.Thread(
            target=self._read_loop, name=f"mqtt-link-{self._config['client_id']}", daemon=True
        )
        self._reader.start()

    def publish(self, topic: str, payload: bytes, retain: bool) -> bool:
        """Queue a QoS 1 publish in the child; ``False`` (and ``on_publish_failed``) if the
        child is not there. The child reports a publish paho refused with ``pubfail``."""
        conn = self._conn
        if conn is not None:
            try:
                with self._send_lock:
                    conn.send(("pub", topic, payload, retain))
                return True
            except OSError:
                pass
        self._on_publish_failed(topic, "the MQTT process is not running")
        return False

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stopping.set()
        self._send_acks()  # what was applied is acknowledged before the child stops
        with self._spawn_lock:
            conn, proc = self._conn, self._proc
        if conn is not None:
            try:
                with self._send_lock:
                    conn.send(("stop",))
            except OSError:
                pass
        if proc is not None:
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                log.warning("MQTT process %s did not stop in time; killing it", proc.pid)
                proc.kill()
                proc.wait(timeout_s)
        if conn is not None:
            conn.close()
        if self._reader is not None and self._reader is not threading.current_thread():
            self._reader.join(timeout_s)

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    # ------------------------------------------------------------------ reader thread

    def _spawn(self) -> None:
        parent_end, child_end = socket.socketpair()
        env = dict(os.environ)
        root = str(Path(__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        self._proc = subprocess.Popen(
            [sys.executable, "-m", CHILD_MODULE, str(child_end.fileno())],
            pass_fds=(child_end.fileno(),),
            stdin=subprocess.PIPE,
            env=env,
        )
        child_end.close()
        assert self._proc.stdin is not None
        try:  # the settings, password included, go through a pipe: not in argv, not in a log
            self._proc.stdin.write(json.dumps(self._config).encode() + b"\n")
            self._proc.stdin.close()
        except OSError:
            log.error("could not hand the MQTT process its settings (it exited at once)")
        self._conn = Connection(parent_end.detach())

    def _read_loop(self) -> None:
        while not self._stopping.is_set():
            conn = self._conn
            try:
                while conn is not None:
                    if not self._acks_sent_or_waited(conn):
                        continue
                    message = conn.recv()
                    kind = message[0]
                    if kind != "msgs":
                        self._handle(message)
                        continue
                    batch, acks, others = self._gather(conn, message[1], message[2])
                    with self._acks_lock:  # acknowledged within ack_every_s, idle or not
                        due = time.monotonic() + self._ack_every_s
                        self._next_ack_at = min(self._next_ack_at, due) if self._unsent else due
                        self._unsent += 1
                    self._acks_missed = 0
                    self._on_messages(batch, AppliedLatch(functools.partial(self._ack, conn, acks)))
                    for other in others:
                        self._handle(other)
            except (EOFError, OSError):
                pass
            except Exception:
                log.exception("MQTT link reader failed; restarting the MQTT process")
            if self._stopping.is_set():
                return
            self._on_state(False, "the MQTT process exited", True)
            delay = _RESTART_DELAY_S
            while True:
                log.error("MQTT process exited; starting a new one in %.0f s", delay)
                if self._stopping.wait(delay):
                    return
                try:
                    with self._spawn_lock:
                        if self._stopping.is_set():
                            return
                        self._reap()
                        self.restarts += 1
                        self._spawn()
                    break
                except (OSError, subprocess.SubprocessError):
                    log.exception("could not start the MQTT process")
                    delay = min(delay * 2, _MAX_RESTART_DELAY_S)

    def _gather(
        self, conn: Connection, first: Batch, first_acks: tuple[int, list[int]]
    ) -> tuple[Batch, Acks, list[Any]]:
        """``first`` and whatever else the child has sent already: one hand-over instead
        of one per burst the child read (the child lingers, this side does not wait)."""
        acks: Acks = [first_acks]
        batch: Batch | None = None
        others: list[Any] = []
        while (batch is None or len(batch) < _MAX_BATCH) and _readable(conn, 0):
            message = conn.recv()
            if message[0] != "msgs":
                others.append(message)
                continue
            if batch is None:
                batch = list(first)
            batch.extend(message[1])
            generation, mids = message[2]
            if generation == acks[-1][0]:
                acks[-1][1].extend(mids)
            else:
                acks.append((generation, list(mids)))
        return (first if batch is None else batch), acks, others

    def _ack(self, conn: Connection, acks: Acks) -> None:
        """The batch is applied (on the thread that released its latch last): its ids wait
        for the reader's next :meth:`_send_acks`, to go to the child that received them."""
        with self._acks_lock:
            self._acks_due.append((conn, acks))

    def _acks_sent_or_waited(self, conn: Connection) -> bool:
        """Reader thread, before it reads: ``True`` if a message is there to read (or no
        acknowledgement is owed); else it waited until the acknowledgements were due, sent
        them, and returns ``False``."""
        if not self._unsent:
            return True
        wait = self._next_ack_at - time.monotonic()
        if wait > 0 and _readable(conn, wait):
            return True
        sent = self._send_acks()
        self._acks_missed = 0 if sent else self._acks_missed + 1
        idle = self._acks_missed * self._ack_every_s >= _ACK_IDLE_S
        self._next_ack_at = time.monotonic() + (_ACK_IDLE_S if idle else self._ack_every_s)
        return False

    def _send_acks(self) -> int:
        """Send the ids of the batches applied since the last call, one ``ack`` message per
        child; the number of batches. If a child is gone (its ``conn`` closed), the broker
        redelivers its messages to the next one."""
        with self._acks_lock:
            due, self._acks_due = self._acks_due, []
            self._unsent -= len(due)
        by_conn: dict[Connection, Acks] = {}
        for conn, acks in due:
            merged = by_conn.setdefault(conn, [])
            for generation, mids in acks:
                if not mids:
                    continue
                if merged and merged[-1][0] == generation:
                    merged[-1][1].extend(mids)
                else:
                    merged.append((generation, list(mids)))
        for conn, merged in by_conn.items():
            if merged:
                self._send_ack(conn, merged)
        return len(due)

    def _send_ack(self, conn: Connection, acks: Acks) -> None:
        """Reader thread, or :meth:`stop`'s: ``acked`` is counted under the send lock."""
        n = sum(len(mids) for _, mids in acks)
        try:
            with self._send_lock:
                conn.send(("ack", acks))
                self.acked += n
        except OSError:
            return
        if self._on_acked is not None:
            self._on_acked(n)

    def _handle(self, message: Any) -> None:
        kind = message[0]
        if kind == "up":
            self._on_state(True, message[1], False)
        elif kind == "down":
            self._on_state(False, message[1], message[2])
        elif kind == "pubfail":
            self._on_publish_failed(message[1], message[2])

    def _reap(self) -> None:
        conn, proc = self._conn, self._proc
        self._conn = None
        if conn is not None:
            conn.close()
        if proc is not None and proc.poll() is None:
            proc.kill()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                log.error("MQTT process %s did not die", proc.pid)


def _readable(conn: Connection, timeout_s: float) -> bool:
    """``conn.poll(timeout_s)`` at a fifth of the CPU (it builds a selector per call; the
    reader asks twice per batch): a message, or the end of the connection, is there."""
    poller = select.poll()
    poller.register(conn.fileno(), select.POLLIN)
    return bool(poller.poll(math.ceil(timeout_s * 1000)))
