"""The thread-safe shell around one :class:`~simulator.station.StationSimulator`.

Three threads touch a station: its paho network thread (connections and
commands), the fleet's single ticker thread (physics) and the main thread
(start-up and shutdown). :class:`StationRunner` serialises them with one lock
per station, publishes what the simulator returns *while holding that lock* (so
messages leave in ``seq`` order) and decides when to save: at once after a
status change, and meter progress on every batch (fsynced at most every
``save_every`` real seconds).
The transport is a plain callable, so tests run it with a list.

While disconnected it publishes nothing: the session-critical messages wait in
the station's outbox (saved with its state) and the rest is dropped. On every
(re)connection the outbox goes first, then the birth and fresh statuses. A
kept message leaves the outbox when the transport's delivery handle (paho's
``MQTTMessageInfo``) says its PUBACK arrived; the runner checks the handles on
every operation under its lock, so the paho thread never waits for that lock
while holding paho's own (``on_publish`` runs under paho's message mutex).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol

from protocol import Message, MeterValues, StatusReport
from simulator.outbox import OutboxKey, outbox_key
from simulator.persistence import StationStore
from simulator.station import StationSimulator

__all__ = ["Delivery", "Publish", "StationRunner"]

log = logging.getLogger("simulator.runner")


class Delivery(Protocol):
    """What a transport returns for a queued message: paho's ``MQTTMessageInfo`` fits."""

    def is_published(self) -> bool:
        """True once the broker acknowledged it (PUBACK); may raise if it never will."""
        ...

    def wait_for_publish(self, timeout: float | None = None) -> None:
        """Block until :meth:`is_published` or the time-out; may raise as it does."""
        ...


Publish = Callable[[Message], Delivery | None]
"""Queue one message; return a handle to learn of its PUBACK, or ``None`` (not sent)."""


class StationRunner:
    """Lock + persistence + publishing for one station; transport-agnostic."""

    def __init__(
        self,
        simulator: StationSimulator,
        publish: Publish,
        *,
        store: StationStore | None = None,
        save_every: float = 2.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.simulator = simulator
        self._publish = publish
        self._store = store
        self._save_every = save_every
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._last_save = float("-inf")
        self._online = False
        self._in_flight: dict[OutboxKey, Delivery] = {}  # kept messages awaiting PUBACK

    @property
    def station_id(self) -> str:
        return self.simulator.station_id

    def connected(self) -> None:
        """Runs on the paho thread after every CONNACK: what the outbox kept, in order,
        then the birth and all statuses."""
        with self._lock:
            self._online = True
            self._send(self.simulator.online_messages())

    def disconnected(self) -> None:
        """Runs on the paho thread when the connection is lost: stop publishing."""
        with self._lock:
            self._online = False

    def wait_delivered(self, timeout: float) -> bool:
        """Wait (bounded) until every kept message handed to the transport is
        acknowledged, then let the outbox forget them; ``False`` on time-out."""
        with self._lock:
            handles = list(self._in_flight.values())
        deadline = time.monotonic() + timeout
        for handle in handles:
            with contextlib.suppress(RuntimeError, ValueError):  # never sent: stays kept
                handle.wait_for_publish(max(0.0, deadline - time.monotonic()))
        with self._lock:
            self._send([])  # forget (and save) what was acknowledged
            return not self._in_flight

    def received(self, topic: str, payload: bytes, *, retained: bool = False) -> None:
        """Runs on the paho thread for every incoming message (never raises)."""
        try:
            with self._lock:
                self._send(self.simulator.handle_payload(topic, payload, retained=retained))
        except Exception:
            log.exception("Station %s failed to handle a message on %s", self.station_id, topic)

    def tick(self, now: float) -> None:
        """Runs on the fleet ticker thread (never raises: one station must not stop the rest)."""
        try:
            with self._lock:
                self._send(self.simulator.tick(now))
        except Exception:
            log.exception("Station %s failed to tick", self.station_id)

    def shutdown_message(self) -> Message:
        with self._lock:
            return self.simulator.offline_message("shutdown")

    def save(self) -> None:
        """Save now, whatever changed (the final save on shutdown)."""
        with self._lock:
            self._save()

    def _send(self, messages: list[Message]) -> None:
        """Save first, then publish: the CSMS never sees a value the station could lose.

        A status change is saved durably (fsync). Meter progress is saved on every
        batch too, so a killed process resumes with the register it last published
        (the atomic rename is enough against a process crash), but fsynced at most
        every ``save_every`` seconds, so a fleet at ``--speed 60`` does not fsync
        hundreds of times a second.
        """
        sim = self.simulator
        self._collect_deliveries()
        if sim.needs_save:
            self._save(durable=True)
        elif sim.has_progress:  # meter samples, or kept messages acknowledged
            due = self._monotonic() - self._last_save >= self._save_every
            self._save(durable=due)
        if not self._online:
            return  # the outbox has what matters; the fresh statuses will tell the rest
        for message in messages:
            delivery = self._publish(message)
            if isinstance(message, StatusReport | MeterValues):
                key = outbox_key(message)
                if delivery is not None and key in sim.outbox:
                    self._in_flight[key] = delivery

    def _collect_deliveries(self) -> None:
        """Forget the kept messages whose PUBACK arrived."""
        done = []
        for key, delivery in self._in_flight.items():
            try:
                published = delivery.is_published()
            except (RuntimeError, ValueError):  # never sent: it stays kept for the replay
                published = False
                done.append(key)
            if published:
                self.simulator.delivered(key)
                done.append(key)
            elif key not in self.simulator.outbox:
                done.append(key)
        for key in done:
            del self._in_flight[key]

    def _save(self, durable: bool = True) -> None:
        snapshot = self.simulator.checkpoint()
        if durable:
            self._last_save = self._monotonic()
        if self._store is None:
            return
        try:
            self._store.save(snapshot, durable=durable)
        except OSError:
            log.exception("Station %s could not save %s", self.station_id, self._store.path)
